"""mirrorscope.store stage: the database behind the pipeline (SQLite or PostgreSQL).

Public API: Store (repository), AnalysisStore (analysis results), StoreError, make_engine,
and the schema helpers upgrade, current_revision, head_revision.  ORM classes never leave
this package.
"""

from mirrorscope.store.analysis_repo import AnalysisStore
from mirrorscope.store.db import StoreError, make_engine
from mirrorscope.store.migrate import current_revision, head_revision, upgrade
from mirrorscope.store.repository import Store

__all__ = [
    "AnalysisStore",
    "Store",
    "StoreError",
    "current_revision",
    "head_revision",
    "make_engine",
    "upgrade",
]
