"""Typed pipeline configuration, validated at load time.

A config is one YAML file. Command-line flags (``--input``, ``--output``, ``--engine``,
``--set key=value``) override it. Any unknown key or wrong type is an error that names the key
and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from babelsieve.pipeline.stages import check_stage_list

REDACTED = "<redacted>"
# Key names that hold credentials, at any depth: storage_options.key/secret/token,
# client_kwargs.aws_secret_access_key, spark.hadoop.fs.s3a.secret.key, env_vars.API_TOKEN, ...
_SECRET_WORDS = re.compile(
    r"secret|passw|credential|private|(^|[^a-z])(key|token|auth|authorization|pwd|apikey)($|[^a-z])")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def is_secret_key(name: str) -> bool:
    """True when a mapping key names a credential (``key``, ``secret``, ``session_token``, ``password``...)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower()  # accessKeyId -> access_key_id
    return bool(_SECRET_WORDS.search(snake))


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` with every secret-named key's value replaced by ``REDACTED``, at any
    depth, and the user:password part of URLs in strings removed. The one place outputs, logs and
    printed configs are made safe to publish."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "", {}, []) else redact_secrets(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    if isinstance(value, str) and "@" in value:
        return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", value)
    return value


def without_redacted(value: Any) -> Any:
    """``value`` without the entries :func:`redact_secrets` replaced, so that a saved config's
    options can be reused (with credentials from the environment or the command line)."""
    if isinstance(value, dict):
        return {k: without_redacted(v) for k, v in value.items() if v != REDACTED}
    if isinstance(value, list):
        return [without_redacted(v) for v in value]
    return value


SECRET_SETS_ENV = "BABELSIEVE_SECRET_SETS"


def env_sets(environ: dict[str, str] | None = None) -> list[str]:
    """``--set`` overrides from ``$BABELSIEVE_SECRET_SETS`` (one ``KEY=VALUE`` per line), applied after
    the command line's: the way to give credentials without putting them on a command line, where
    ``ps`` and job logs would show them (deploy/spark/submit.sh and the Airflow DAG use it)."""
    text = (os.environ if environ is None else environ).get(SECRET_SETS_ENV, "")
    return [line for line in text.splitlines() if line.strip()]


class ConfigError(ValueError):
    """A configuration problem, with the offending key and file in the message."""


class _Strict(BaseModel):
    # extra="forbid" turns typos into errors instead of silently ignored keys.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputsConfig(_Strict):
    """Where WARC shards come from."""

    paths: list[str] = Field(default_factory=list, description="Paths, globs, fsspec URLs or warc.paths(.gz) listings")
    shards: str | None = Field(None, description="Shard range 'start:stop' applied after expansion, e.g. '0:100'")
    dump: str | None = Field(None, description="Value of the `dump` column when it cannot be read from the path")

    @field_validator("shards")
    @classmethod
    def _check_range(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.split(":")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() or p.strip() == "" for p in parts):
            raise ValueError(f"expected 'start:stop' (e.g. '0:100'), got {v!r}")
        # Negative, empty and out-of-range ranges are refused where the number of inputs is known
        # (inputs.shard_range), so that the message can name it.
        return v


class ExtractConfig(_Strict):
    """Extract stage: WARC -> HTML -> text -> language ID."""

    favour_precision: bool = True
    deduplicate: bool = True
    extractor: Literal["trafilatura", "trafilatura_plain"] = Field(
        "trafilatura",
        description="trafilatura: same favour-precision result with less work per page "
        "(extraction/fast_trafilatura.py); "
        "trafilatura_plain: trafilatura.extract itself",
    )
    time_limit_s: float = Field(10.0, gt=0, description="Per-document wall-clock limit for HTML->text")
    max_html_bytes: int = Field(5_000_000, gt=0,
                                description="Pages above this size are skipped (reason html_too_large)")
    memory_limit_mb: int | None = Field(
        None, description="Address-space cap per local worker process; a page that exceeds it is skipped"
    )
    url_filter: bool = Field(True, description="FineWeb URL filter (block lists, banned words) before extraction")
    min_text_chars: int = Field(1, ge=0)


class LangIdConfig(_Strict):
    """Language identification."""

    backend: Literal["auto", "glotlid", "lid176", "none"] = "auto"
    model: str | None = Field(None, description="Path/URL of a GlotLID model file (overrides the cache)")
    top_langs_threshold: float = Field(0.01, ge=0, le=1)
    min_score: dict[str, float] = Field(default_factory=dict, description="Per-language minimum score overrides")


class DedupConfig(_Strict):
    """Global MinHash deduplication per language."""

    enabled: bool = True
    n_grams: int = Field(5, ge=1)
    num_buckets: int = Field(14, ge=1)
    hashes_per_bucket: int = Field(8, ge=1)
    seed: int = 1
    partitions: int = Field(16, ge=1, description="Hash partitions of the band-bucket shuffle")
    previous_signatures: list[str] = Field(default_factory=list, description="Signature dirs of earlier runs")
    shingle_hash: Literal["fast", "datatrove"] = Field(
        "fast", description="'datatrove': xxhash64 of the joined n-gram (bit-identical signatures, slower)"
    )


class FilterConfig(_Strict):
    """Per-language quality filters (FineWeb2's set by default)."""

    enabled: bool = True
    gopher_repetition: bool = True
    fineweb_quality: bool = True
    gopher_quality: bool = True
    c4: bool = False
    kenlm: dict[str, str] = Field(default_factory=dict, description="language -> KenLM model path/URL")
    kenlm_max_perplexity: dict[str, float] = Field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="language -> {threshold name: value}"
    )


class ClassifierConfig(_Strict):
    """One fastText quality classifier of the ``classify`` stage (docs/quality-classifiers.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$",
                      description="Column name part: writes quality_<name> (and quality_<name>_bucket)")
    model: str = Field(description="fastText .bin/.ftz model: a path or an fsspec URL (fetched once into the cache)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$",
                               description="Expected sha256 of the model file (checked when fetched and loaded)")
    languages: Literal["*"] | list[str] = Field("*", description="'*' or the lang_script labels it scores")
    label: str = Field(description="The positive label, e.g. __label__hq; the score is its probability")
    threshold: float | None = Field(None, ge=0, le=1, description="Remove documents scoring below it (none: keep)")
    thresholds: dict[str, float] = Field(default_factory=dict, description="lang_script -> threshold override")
    buckets: list[float] = Field(default_factory=list,
                                 description="Increasing cut points in (0, 1): bucket = how many are <= score")
    max_chars: int | None = Field(None, ge=1, description="Score only the first N characters (none: whole text)")
    lowercase: bool = Field(False, description="Lower-case the text before scoring (str.lower)")
    newlines: Literal["space", "remove"] = Field(
        "space", description="Line breaks before scoring: 'space' (DCLM; datatrove with newline_replacement=' ') "
                             "or 'remove' (datatrove's FastTextClassifierFilter default)")
    strip: bool = Field(False, description="str.strip() the text first (datatrove's FastTextClassifierFilter does)")

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not 0 < x < 1 for x in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"expected strictly increasing cut points between 0 and 1, got {v}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _in_unit(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1], got {bad}")
        return v

    def threshold_for(self, lang_script: str) -> float | None:
        """The removal threshold of a language (its override, else ``threshold``)."""
        return self.thresholds.get(lang_script, self.threshold)

    def applies_to(self, lang_script: str) -> bool:
        return self.languages == "*" or lang_script in self.languages


class ClassifyConfig(_Strict):
    """The ``classify`` stage: learned quality scores (fastText classifiers), per language."""

    classifiers: list[ClassifierConfig] = Field(default_factory=list)

    @field_validator("classifiers")
    @classmethod
    def _unique_names(cls, v: list[ClassifierConfig]) -> list[ClassifierConfig]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"classifier names must be unique, repeated: {dup}")
        return v


class FinalizeConfig(_Strict):
    enabled: bool = True
    pii: bool = True
    ftfy: bool = True
    symbol_lines: bool = True
    # The final output has FineWeb2's columns plus lang_script; true also keeps the filter's sig_* columns.
    keep_signals: bool = False


class RebalanceConfig(_Strict):
    enabled: bool = False
    rehydration: Literal["none", "fineweb2", "computed"] = "none"
    max_reps: int = Field(5, ge=1)
    temperature_alpha: float | None = Field(None, gt=0, le=1)
    budgets: dict[str, int] = Field(default_factory=dict)
    budget_unit: Literal["documents", "bytes"] = "documents"
    seed: int = 0


class SlurmConfig(_Strict):
    """``--engine slurm``: how array jobs are submitted (sbatch options; scheduling only)."""

    partition: str | None = Field(None, description="sbatch --partition (default: the cluster's default partition)")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    time: str | None = Field(None, description="sbatch --time per array task, e.g. '4:00:00' or '1-00:00:00'")
    cpus_per_task: int | None = Field(None, ge=1, description="sbatch --cpus-per-task (default: "
                                                              "ceil(engine_options.cpus_per_task))")
    mem_per_cpu: str | None = Field(None, description="sbatch --mem-per-cpu, e.g. '4G' (not with mem)")
    mem: str | None = Field(None, description="sbatch --mem per array task, e.g. '8G' (not with mem_per_cpu)")
    max_array_size: int = Field(1000, ge=1, description="Array indices per stage (the cluster's MaxArraySize - 1 "
                                                        "at most); an index runs a slice of the stage's tasks")
    max_concurrent: int | None = Field(None, ge=1, description="Array tasks running at once (--array=...%N)")
    sbatch_args: list[str] = Field(default_factory=list, description="Extra sbatch arguments, e.g. ['--constraint=x']")
    env_setup: list[str] = Field(default_factory=list, description="Shell lines run before babelsieve in each job "
                                                                   "(module load, source venv/bin/activate)")

    @field_validator("time", mode="before")
    @classmethod
    def _time_is_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 4:00:00 as the number 14400 (base 60): never guess which was meant
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            raise ValueError(f"write the time limit quoted, e.g. '60' (minutes) or '4:00:00' (got the number {v}; "
                             "YAML turns an unquoted 4:00:00 into 14400)")
        return v

    @field_validator("time")
    @classmethod
    def _check_time(cls, v: str | None) -> str | None:
        # sbatch's formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (and UNLIMITED)
        if v is not None and not re.fullmatch(r"(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2}|UNLIMITED|INFINITE)", v.strip()):
            raise ValueError(f"expected a Slurm time such as '30', '4:00:00' or '1-12:00:00', got {v!r}")
        return v

    @field_validator("mem", "mem_per_cpu")
    @classmethod
    def _check_mem(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+[KMGT]?", v.strip(), flags=re.IGNORECASE):
            raise ValueError(f"expected a Slurm memory size such as '4000' (MB), '8G' or '512M', got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_memory_option(self) -> SlurmConfig:
        if self.mem and self.mem_per_cpu:
            raise ValueError("set mem or mem_per_cpu, not both (sbatch accepts only one)")
        return self


class TasksConfig(_Strict):
    """How the stages after extract group their input files into tasks (docs/scaling.md): by work, so
    that task and file counts follow documents, not shards x languages. Changes file names, never rows."""

    target_documents: int = Field(50_000, ge=1, description="Documents per task after extract (a task closes "
                                                             "once it reaches this)")
    target_bytes: int = Field(256 * 1024**2, ge=1, description="Input bytes per task after extract")
    max_input_files: int = Field(1000, ge=2, description="Input files per task at most (fan-in)")


class EngineConfig(_Strict):
    """Scheduling only: never changes what a task writes."""

    workers: int | None = Field(None, ge=1, description="Local worker processes (default: all cores)")
    ray_address: str | None = Field(None, description="Ray cluster to join (else RAY_ADDRESS, else a local Ray)")
    ray_runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for the job, e.g. {py_modules: [...], pip: [...]} on a bare cluster"
    )
    spark_master: str | None = Field(None, description="Spark master URL (else SPARK_MASTER / spark-submit's, "
                                                       "else local[workers])")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings (spark.* keys)")
    max_retries: int = Field(2, ge=0)
    cpus_per_task: float = Field(1.0, gt=0)
    memory_per_task_mb: int | None = None
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)


class PipelineConfig(_Strict):
    """The whole run."""

    inputs: InputsConfig = Field(default_factory=InputsConfig)
    output: str = "./babelsieve-out"
    engine: Literal["local", "ray", "spark", "slurm"] = "local"
    stages: list[str] = Field(default_factory=lambda: ["extract", "dedup", "filter", "finalize"],
                              description="Stage groups to run, in pipeline order (pipeline/stages/__init__.py)")

    @field_validator("stages")
    @classmethod
    def _known_stages_in_order(cls, v: list[str]) -> list[str]:
        return check_stage_list(v)

    # repr=False: credentials must not reach a log line or a traceback through repr(config).
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False,
                                            description="fsspec options (e.g. S3 endpoint); never written out")
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    finalize: FinalizeConfig = Field(default_factory=FinalizeConfig)
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    engine_options: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _classify_is_a_stage(self) -> PipelineConfig:
        if self.classify.classifiers and "classify" not in self.stages:
            raise ValueError("classify.classifiers is set but 'classify' is not in stages "
                             "(add it, e.g. stages: [extract, dedup, filter, classify, finalize])")
        return self

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON data with credentials redacted: what ``_run.json``, the dataset card,
        logs and ``status``/``plan`` may show. Every place that writes or prints a config uses this."""
        return redact_secrets(self.model_dump(mode="json"))

    def __repr__(self) -> str:  # a config in a log line or a traceback shows no credentials
        return f"PipelineConfig({self.public_dict()!r})"

    __str__ = __repr__

    def content_hash(self) -> str:
        """Hash of everything that can change output bytes (not engine, workers or the output URL).

        ``storage_options`` (credentials, endpoint, retries) only say how bytes are reached, never
        which bytes: they are left out, so the hash is the same with or without credentials.
        """
        data = self.model_dump(mode="json", exclude={"engine", "engine_options", "output", "storage_options"})
        data["inputs"].pop("shards", None)  # the shard range selects tasks; it does not change a task's bytes
        if not data["classify"]["classifiers"]:  # no classifier: the same hash as before the classify stage existed
            data.pop("classify")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def bundled_config_path(name: str) -> Path:
    """Path of a config shipped in the package (``configs/<name>.yaml``)."""
    return Path(str(resources.files("babelsieve.configs").joinpath(f"{name}.yaml")))


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}' (check the spelling; see `babelsieve run --help`)")
        else:
            secret = any(is_secret_key(str(p)) for p in e["loc"]) or e["loc"][:1] == ("storage_options",)
            lines.append(f"  - key '{key}': {e['msg']} (got {REDACTED if secret else repr(e.get('input'))})")
    return "\n".join(lines)


def _parse_scalar(text: str) -> Any:
    # YAML parsing of a single value gives ints, floats, bools, lists and null for free.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignment(assignment: str, option: str = "--set") -> tuple[str, Any]:
    """The one ``KEY=VALUE`` parser of every command: ``(key, value)``, the value read as YAML."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} expects key=value, got {assignment!r}")
    return key.strip(), _parse_scalar(value)


def apply_set(data: dict[str, Any], assignment: str, option: str = "--set") -> None:
    """Apply one ``key.sub=value`` override to a raw mapping (a config, or fsspec options)."""
    key, value = parse_assignment(assignment, option)
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{option} {key}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def load_config(
    path: str | Path | None = None,
    *,
    inputs: list[str] | None = None,
    output: str | None = None,
    engine: str | None = None,
    sets: list[str] | None = None,
    shards: str | None = None,
) -> PipelineConfig:
    """Load and validate a YAML config, then apply command-line overrides.

    ``path=None`` loads the bundled ``configs/dry-run.yaml``.
    """
    src = Path(path) if path else bundled_config_path("dry-run")
    try:
        raw = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {src}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{src} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: top level must be a mapping of keys to values")
    for s in sets or []:
        apply_set(raw, s)
    if inputs:
        raw.setdefault("inputs", {})["paths"] = list(inputs)
    if shards:
        raw.setdefault("inputs", {})["shards"] = shards
    if output:
        raw["output"] = output
    if engine:
        raw["engine"] = engine
    source = str(src) + (" (with --set overrides)" if sets else "")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
