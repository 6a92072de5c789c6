"""Jobs HTTP service: the superuser REST API, the admin UI and the `jobs` command.

`create_app(jobs, token=...)` returns a Litestar app whose lifespan runs the worker.
"""

from jobs_http._app import BODY_ENVELOPE, OPENAPI_PATH, create_app, is_public, public_paths
from jobs_http._auth import Authenticate, bearer_token, token_checker
from jobs_http._wire import AttemptErrorOut, ErrorOut, JobOut, JobPageOut, StatsOut

__all__ = [
    "BODY_ENVELOPE",
    "OPENAPI_PATH",
    "AttemptErrorOut",
    "Authenticate",
    "ErrorOut",
    "JobOut",
    "JobPageOut",
    "StatsOut",
    "bearer_token",
    "create_app",
    "is_public",
    "public_paths",
    "token_checker",
]
