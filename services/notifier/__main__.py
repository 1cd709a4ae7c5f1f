"""Start the notifier: read settings and policy, build, run (`complaints run notifier`)."""

from services.common.runtime import serve
from services.notifier.app import build
from services.notifier.settings import NotifierSettings

if __name__ == "__main__":
    serve(build, NotifierSettings)
