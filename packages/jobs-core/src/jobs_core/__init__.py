"""Jobs core: a persistent background job queue's domain, ports, service and worker.

Everything public is re-exported here; modules starting with `_` are private.
"""

from jobs_core._config import MAX_RETRIES_LIMIT, JobsConfig, exponential_backoff
from jobs_core._errors import (
    CannotDelete,
    CannotRequeue,
    IllegalTransition,
    InvalidInput,
    InvalidOptions,
    InvalidPayload,
    InvalidTopic,
    JobBusy,
    JobNotFound,
    JobsError,
    LockLost,
    PayloadTooLarge,
    SchemaMissing,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    TopicAlreadyRegistered,
    UnknownStoreScheme,
    UnreadableJob,
)
from jobs_core._fields import FieldKind, FieldSpec
from jobs_core._memory import MemoryStore
from jobs_core._model import (
    CLAIM_FIELDS,
    EARLIEST_TIME,
    JOB_FIELDS,
    JOB_SCHEMA,
    LATEST_TIME,
    MUTABLE_FIELDS,
    OPTION_FIELDS,
    TIME_FIELDS,
    WIRE_FIELDS,
    EnqueueOptions,
    Job,
    JobPage,
    JobQuery,
    JobStats,
    JobStatus,
    JobUpdate,
    JSONValue,
    rows_within_budget,
)
from jobs_core._payload import MAX_DEPTH as MAX_PAYLOAD_DEPTH
from jobs_core._payload import serialize as serialize_payload
from jobs_core._registry import available_schemes, open_store
from jobs_core._service import Jobs
from jobs_core._transitions import LOCK_EXPIRED
from jobs_core._validation import MAX_PAGE_SIZE, MAX_TOPIC_LENGTH
from jobs_core._worker import Handler
from jobs_core.clock import Clock, SystemClock
from jobs_core.ports import JobStore, MigratableStore, SchemaVersion

__all__ = [
    "LOCK_EXPIRED",
    "MAX_PAGE_SIZE",
    "MAX_PAYLOAD_DEPTH",
    "MAX_RETRIES_LIMIT",
    "MAX_TOPIC_LENGTH",
    "CLAIM_FIELDS",
    "EARLIEST_TIME",
    "JOB_FIELDS",
    "JOB_SCHEMA",
    "LATEST_TIME",
    "MUTABLE_FIELDS",
    "OPTION_FIELDS",
    "TIME_FIELDS",
    "WIRE_FIELDS",
    "CannotDelete",
    "CannotRequeue",
    "Clock",
    "EnqueueOptions",
    "FieldKind",
    "FieldSpec",
    "Handler",
    "IllegalTransition",
    "InvalidInput",
    "InvalidOptions",
    "InvalidPayload",
    "InvalidTopic",
    "JSONValue",
    "Job",
    "JobBusy",
    "JobNotFound",
    "JobPage",
    "JobQuery",
    "JobStats",
    "JobStatus",
    "JobStore",
    "JobUpdate",
    "Jobs",
    "JobsConfig",
    "JobsError",
    "LockLost",
    "MemoryStore",
    "MigratableStore",
    "PayloadTooLarge",
    "SchemaMissing",
    "SchemaTooNew",
    "SchemaVersion",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "TopicAlreadyRegistered",
    "UnknownStoreScheme",
    "UnreadableJob",
    "available_schemes",
    "exponential_backoff",
    "open_store",
    "rows_within_budget",
    "serialize_payload",
]
