"""An EC2 instance's metadata service (IMDS), as the AWS credential source reads it:
``/latest/...`` on the emulator's origin, IMDSv2 by default
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html).

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1 to
  21600) → a session token;
- with ``X-aws-ec2-metadata-token`` (required unless IMDSv1 is allowed):
  ``/latest/meta-data/placement/availability-zone`` → ``REGIONa``,
  ``/latest/meta-data/iam/security-credentials/`` → the role name,
  ``…/security-credentials/ROLE`` → its temporary credentials, which the
  emulated STS accepts signatures of.

Nothing is answered until :meth:`GoogleEmulator.aws_instance` configured an instance.
"""

from __future__ import annotations

import datetime
from typing import ClassVar

from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import json_response, not_found, rfc3339

__all__ = ["AWS_METADATA_PATH", "AwsInstanceMetadata"]

AWS_METADATA_PATH = "/latest/"
_CREDENTIALS = "/latest/meta-data/iam/security-credentials"


def _text(status: int, value: str) -> Response:
    return Response(status, value.encode(), "text/plain")


class AwsInstanceMetadata(Service):
    """IMDS: session tokens, the availability zone, the role and its credentials."""

    kind: ClassVar[EndpointKind] = "aws"

    def owns(self, path: str) -> bool:
        return path.startswith(AWS_METADATA_PATH)

    def issues_tokens(self, path: str) -> bool:
        return path.startswith(_CREDENTIALS + "/") and len(path) > len(_CREDENTIALS) + 1

    def failure(self, status: int) -> Response:
        return _text(status, "Emulated failure.")

    def serve(self, request: Request, record: RequestRecord) -> Response:
        federation = self.state.federation
        instance = federation.aws_instance
        if instance is None:
            return not_found()
        if request.path == "/latest/api/token":
            if request.method != "PUT":
                return _text(405, "Method Not Allowed")
            try:
                ttl = int(str(request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")))
            except ValueError:
                return _text(400, "Bad Request")
            if not 1 <= ttl <= 21600:
                return _text(400, "Bad Request")
            return _text(200, federation.new_imds_session(ttl))
        if request.method != "GET":
            return _text(405, "Method Not Allowed")
        session = request.headers.get("X-aws-ec2-metadata-token")
        if federation.require_imdsv2 and not federation.imds_session_valid(session):
            return _text(401, "Unauthorized")
        path = request.path.rstrip("/")
        if path == "/latest/meta-data/placement/availability-zone":
            return _text(200, instance.region + "a")
        if path == _CREDENTIALS:
            return _text(200, instance.role)
        if path == f"{_CREDENTIALS}/{instance.role}":
            key = instance.key
            record.principal = key.arn
            now = datetime.datetime.now(datetime.timezone.utc).timestamp()
            return json_response(
                200,
                {
                    "Code": "Success",
                    "LastUpdated": rfc3339(now),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": key.access_key_id,
                    "SecretAccessKey": key.secret_access_key,
                    "Token": key.session_token,
                    "Expiration": rfc3339(now + 6 * 3600),
                },
            )
        return not_found()
