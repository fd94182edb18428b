"""Where the lakehouse lives: table URIs and the delta-rs / pyarrow storage options for a root.

The same code serves a local folder and an s3://bucket/prefix root (MinIO in production, moto's
S3 server in tests); only the settings differ.
"""
from __future__ import annotations

from pathlib import Path

from tweetops.core.settings import Settings, load_settings


def table_uri(name: str, settings: Settings | None = None) -> str:
    settings = settings or load_settings()
    root = settings.lakehouse_uri.rstrip("/")
    return f"{root}/{name}" if settings.lakehouse_on_s3 else str(Path(root) / name)


def storage_options(settings: Settings | None = None) -> dict[str, str]:
    """delta-rs storage options; empty for a local root."""
    settings = settings or load_settings()
    if not settings.lakehouse_on_s3:
        return {}
    options = {
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key or "",
        "AWS_REGION": settings.aws_region,
    }
    if settings.s3_endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.s3_endpoint_url
        options["AWS_ALLOW_HTTP"] = "true" if settings.s3_endpoint_url.startswith("http://") else "false"
        # MinIO and moto serve buckets by path, not by virtual host.
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def pyarrow_filesystem(settings: Settings | None = None):
    """A pyarrow filesystem and the path prefix to read table files directly (Spark workers, DuckDB)."""
    from pyarrow import fs

    settings = settings or load_settings()
    if not settings.lakehouse_on_s3:
        return fs.LocalFileSystem(), ""
    endpoint = settings.s3_endpoint_url
    return fs.S3FileSystem(
        access_key=settings.aws_access_key_id,
        secret_key=settings.aws_secret_access_key,
        region=settings.aws_region,
        endpoint_override=endpoint,
        scheme="http" if endpoint and endpoint.startswith("http://") else "https",
    ), "s3://"


def ensure_bucket(settings: Settings | None = None) -> None:
    """Create the lakehouse bucket if missing (MinIO/moto start empty); a no-op for a local root."""
    settings = settings or load_settings()
    if not settings.lakehouse_on_s3:
        Path(settings.lakehouse_uri).mkdir(parents=True, exist_ok=True)
        return
    import boto3
    from botocore.exceptions import ClientError

    bucket = settings.lakehouse_uri.removeprefix("s3://").split("/")[0]
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
    )
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
