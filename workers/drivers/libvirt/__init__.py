"""The libvirt driver: ``vmigrate worker --driver libvirt [--libvirt-uri URI]``."""

from workers.drivers.libvirt.base import INSTALL, LibvirtConfig
from workers.drivers.libvirt.binding import libvirt
from workers.drivers.libvirt.destination import LibvirtDestination
from workers.drivers.libvirt.source import LibvirtSource
from workers.drivers.registry import DriverSettings


class LibvirtDriver(LibvirtSource, LibvirtDestination):
    """Both sides of a libvirt host."""


class LibvirtUnavailable(RuntimeError):
    pass


def from_settings(settings: DriverSettings) -> LibvirtDriver:
    if libvirt is None:
        raise LibvirtUnavailable(f"the libvirt driver needs libvirt-python: {INSTALL}")
    extra = settings.extra
    driver = LibvirtDriver(
        LibvirtConfig(
            **settings.host_fields(),
            uri=str(extra.get("libvirt_uri", LibvirtConfig.uri)),
            peer_uri=str(extra.get("libvirt_peer_uri", "")),
            completion_timeout_per_gib=float(
                extra.get("completion_timeout_per_gib", LibvirtConfig.completion_timeout_per_gib)
            ),
        )
    )
    driver.conn()  # a worker whose daemon does not answer stops at once, saying so
    return driver


__all__ = ["LibvirtConfig", "LibvirtDriver", "LibvirtUnavailable", "from_settings"]
