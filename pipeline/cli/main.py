"""The ``babelsieve`` command line."""

from __future__ import annotations

import importlib

import click

# Every command: name -> "module:attribute", one module per command. A command's module is imported
# only when it runs (or for --help), so `babelsieve status` never loads the extraction stack.
COMMANDS: dict[str, str] = {
    "run": "babelsieve.pipeline.cli.run:run",
    "status": "babelsieve.pipeline.cli.status:status_command",
    "logs": "babelsieve.pipeline.cli.status:logs_command",
    "inspect": "babelsieve.pipeline.cli.inspect_output:inspect",
    "report": "babelsieve.pipeline.cli.report:report_command",
    "plan": "babelsieve.pipeline.cli.plan:plan_command",
    "refilter": "babelsieve.pipeline.cli.refilter:refilter_command",
    "export": "babelsieve.pipeline.cli.export:export_command",
    "unlock": "babelsieve.pipeline.cli.unlock:unlock",
    "classifier": "babelsieve.pipeline.cli.classifier:classifier_group",
    "rehydrate": "babelsieve.pipeline.cli.rehydrate:rehydrate_command",
    "languages": "babelsieve.pipeline.cli.langid:languages",
    "models": "babelsieve.pipeline.cli.langid:models",
    "langid": "babelsieve.pipeline.cli.langid:langid",
}


class _Commands(click.Group):
    """A click group whose subcommands are the :data:`COMMANDS` table, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="babelsieve")
def main() -> None:
    """babelsieve: turn Common Crawl WARC files into a multilingual pretraining dataset.

    \b
    Start here:
      babelsieve run                    dry run on the bundled sample WARC -> ./babelsieve-out
      babelsieve inspect babelsieve-out documents per language and a few rows
    \b
    A real run:
      babelsieve run configs/fineweb2.yaml --input 's3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz' \\
          --shards 0:100 --output s3://bucket/fw2 --engine ray
    """


if __name__ == "__main__":
    main()
