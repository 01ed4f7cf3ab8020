"""The QEMU driver: ``vmigrate worker --driver qemu``."""

from workers.drivers.qemu.base import QemuConfig
from workers.drivers.qemu.destination import QemuDestination
from workers.drivers.qemu.source import QemuSource
from workers.drivers.registry import DriverSettings


class QemuDriver(QemuSource, QemuDestination):
    """Both sides of a QEMU host."""


def from_settings(settings: DriverSettings) -> QemuDriver:
    timeout = settings.extra.get(
        "completion_timeout_per_gib", QemuConfig.completion_timeout_per_gib
    )
    return QemuDriver(
        QemuConfig(
            **settings.host_fields(),
            completion_timeout_per_gib=float(timeout),
        )
    )


__all__ = ["QemuConfig", "QemuDriver", "from_settings"]
