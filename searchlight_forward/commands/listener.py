"""searchlight-forward-listener --config-file FILE"""
from __future__ import annotations

from searchlight_forward.commands.common import fail, setup
from searchlight_forward.listener import service
from searchlight_forward.worker import StatusPortInUse


def main(argv: list[str] | None = None) -> None:
    conf = setup(argv)
    try:
        service.run(conf)
    except StatusPortInUse as exc:
        fail("searchlight-forward-listener", str(exc))


if __name__ == "__main__":
    main()
