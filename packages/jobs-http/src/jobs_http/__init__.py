"""Jobs HTTP service: the superuser REST API, the admin UI and the `jobs` command.

`create_app(jobs, token=...)` returns a Litestar app whose lifespan runs the worker.
"""

from jobs_http._app import BODY_ENVELOPE, OPENAPI_PATH, create_app, is_public, public_paths
from jobs_http._auth import Authenticate, any_of, bearer_token, token_checker
from jobs_http._metrics import METRICS_PATH, JobsMetrics
from jobs_http._wire import AttemptErrorOut, ErrorOut, JobOut, JobPageOut, StatsOut

__all__ = [
    "BODY_ENVELOPE",
    "METRICS_PATH",
    "OPENAPI_PATH",
    "AttemptErrorOut",
    "Authenticate",
    "ErrorOut",
    "JobOut",
    "JobPageOut",
    "JobsMetrics",
    "StatsOut",
    "any_of",
    "bearer_token",
    "create_app",
    "is_public",
    "public_paths",
    "token_checker",
]
