"""The file to give ``spark-submit``: the ``leopard-etl`` command line, run as a Spark application.

``spark-submit`` starts a Python *file*, not a console script, so::

    spark-submit --master yarn --deploy-mode client \\
        "$(python -c 'import leopard_etl.engines.spark.submit as s; print(s.__file__)')" \\
        run --engine spark --fhir hdfs:///exports/2026-11 --out /data/leopard-out

The session spark-submit made is the one the run uses (docs/spark.md).
"""

import sys

from leopard_etl.cli import main

if __name__ == "__main__":
    sys.exit(main())
