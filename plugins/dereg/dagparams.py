"""Trigger-form fields the backup lifecycle DAGs share (recovery drill, retention sweep, key rotation)."""

from __future__ import annotations

from airflow.sdk import Param


def s3_connection(description: str = "Airflow connection of the off-site store the backups are in.") -> Param:
    return Param(
        "dereg_offsite", type="string", title="S3 connection / 备份存储连接", description=description
    )


def smtp_connection(description: str) -> Param:
    return Param("dereg_smtp", type="string", title="SMTP connection / 邮件连接", description=description)
