"""Where the reports live, and the guard that keeps a requested path inside them.

Two report folders under TWEETOPS_HOME: the Great Expectations Data Docs site and the Evidently
drift reports. The embedded stack keeps TWEETOPS_HOME on local disk; the Docker deployment mounts
the same `tweetops-state` volume at TWEETOPS_HOME in every Airflow container, so the task that
writes a report and the API server that serves it see the same file.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from tweetops.core.settings import Settings

DATA_DOCS = "docs"      # URL folder of the GX Data Docs site
DRIFT_REPORTS = "reports"  # URL folder of the Evidently drift reports


def report_roots(settings: Settings) -> dict[str, Path]:
    """URL folder -> the folder on disk it serves."""
    return {DATA_DOCS: settings.home / "gx" / "uncommitted" / "data_docs" / "local_site",
            DRIFT_REPORTS: settings.home / "reports"}


class ReportPathError(LookupError):
    """The requested report is outside its folder, or does not exist."""


def resolve_report(folder: str, relative: str, settings: Settings) -> Path:
    """The file `relative` inside the report folder `folder`; ReportPathError for anything that
    would leave it ('..', an absolute path, a symbolic link pointing out) or is not a file."""
    roots = report_roots(settings)
    if folder not in roots:
        raise ReportPathError(f"no report folder {folder!r}; known: {', '.join(roots)}")
    root = roots[folder].resolve()
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise ReportPathError(f"{relative!r} is not a report path inside {folder}/")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ReportPathError(f"{relative!r} is outside the {folder}/ report folder")
    if not path.is_file():
        raise ReportPathError(f"no report {relative!r} in {folder}/")
    return path


def report_path_of(uri: str | None, settings: Settings) -> tuple[str, str] | None:
    """(URL folder, relative path) of a report recorded as a file:// URI or a local path, if it lies
    in one of the report folders; None otherwise."""
    if not uri:
        return None
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    for folder, root in report_roots(settings).items():
        for base in {root, root.resolve()}:
            if path.is_relative_to(base):
                return folder, path.relative_to(base).as_posix()
    # Written under another TWEETOPS_HOME (another host or a moved state folder): same layout.
    parts = path.parts
    if "local_site" in parts:
        return DATA_DOCS, Path(*parts[parts.index("local_site") + 1:]).as_posix()
    if "reports" in parts:
        return DRIFT_REPORTS, Path(*parts[len(parts) - parts[::-1].index("reports"):]).as_posix()
    return None
