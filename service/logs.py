"""JSON logs that carry the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _stamp_request_id(factory):
    """Wrap a log-record factory so that every record carries the request id current when it was made."""
    def make(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    make.stamps_request_id = True
    return make


def install_request_id_stamp() -> None:
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stamps_request_id", False):
        logging.setLogRecordFactory(_stamp_request_id(factory))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key in ("method", "route", "status", "ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(json_logs: bool = True, level: int = logging.INFO) -> None:
    install_request_id_stamp()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    handler.installed_by_service = True
    root = logging.getLogger()
    # replace our own and basicConfig's stream handlers; keep others (a test's log capture, say)
    root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler
                        and not getattr(h, "installed_by_service", False)] + [handler]
    root.setLevel(level)
    for noisy in ("httpx", "sentence_transformers", "transformers", "faiss", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
