"""Default staging for local files: plain paths and ``file://`` URLs need no movement.

The provider accepts them in both directions and does nothing, so a local file
reaches the app as the path it names, and a local output's data future simply
follows its task.
"""

from __future__ import annotations

from flowkernel.files import File
from flowkernel.markers import hookimpl
from flowkernel.staging import StagingProvider


class LocalFileStaging(StagingProvider):
    """Files already here: nothing to stage."""

    schemes = ("file",)

    def can_stage_out(self, file: File) -> bool:
        return file.scheme in self.schemes


@hookimpl(trylast=True)
def flowkernel_staging_providers() -> list[StagingProvider]:
    return [LocalFileStaging()]
