"""spark-submit entry point: ``spark-submit [...] driver.py run CONFIG --engine spark [...]``.

The arguments are exactly those of the ``babelsieve`` command. The Spark engine's SparkSession
picks up the master and every ``--conf`` given to spark-submit (leave ``engine_options.spark_master``
unset in the config so that spark-submit's ``--master`` is the one used).
"""

import sys

from babelsieve.pipeline.cli.main import main

if __name__ == "__main__":
    main(args=sys.argv[1:], prog_name="babelsieve")
