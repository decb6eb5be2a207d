"""leopard-etl: FHIR R4 / OMOP CDM to an analysis-ready LEOPARD cohort.

Kept import-free on purpose: ``leopard-etl --help`` must start fast, so heavy
libraries (pandas, lifelines, SQLAlchemy) are imported by the modules that use them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
