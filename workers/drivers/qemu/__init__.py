"""The QEMU driver: ``vmigrate worker --driver qemu``."""

from workers.drivers.qemu.base import QemuConfig
from workers.drivers.qemu.destination import QemuDestination
from workers.drivers.qemu.source import QemuSource


class QemuDriver(QemuSource, QemuDestination):
    """Both sides of a QEMU host."""


__all__ = ["QemuConfig", "QemuDriver"]
