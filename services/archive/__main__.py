"""Start the archive: read settings and policy, build (migrating the database), run
(`python -m services.archive`)."""

from services.archive.app import build
from services.archive.settings import ArchiveSettings
from services.common.runtime import serve

if __name__ == "__main__":
    serve(build, ArchiveSettings)
