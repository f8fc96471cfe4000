"""aiortc peers for viewers: ICE configuration and loopback host candidates.

aioice gathers host candidates from every interface except 127.0.0.1 (``get_host_addresses``
in aioice/ice.py), so two peers on one machine without a routable interface cannot connect.
``enable_loopback_candidates`` wraps that one function (process-wide, idempotent) to append
127.0.0.1; with it a viewer on the same machine connects over loopback with no STUN/TURN.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from server.config import ServerConfig

LOOPBACK = "127.0.0.1"
_patch_lock = threading.Lock()
_original_get_host_addresses: Callable[[bool, bool], list[str]] | None = None


def enable_loopback_candidates() -> None:
    """Make aioice offer 127.0.0.1 as an IPv4 host candidate (in addition to the others)."""
    global _original_get_host_addresses
    with _patch_lock:
        if _original_get_host_addresses is not None:
            return
        original = aioice.ice.get_host_addresses

        def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            addresses = original(use_ipv4, use_ipv6)
            if use_ipv4 and LOOPBACK not in addresses:
                addresses.append(LOOPBACK)
            return addresses

        _original_get_host_addresses = original
        aioice.ice.get_host_addresses = with_loopback


def rtc_configuration(config: ServerConfig) -> RTCConfiguration:
    """The peer configuration: the configured ICE servers, none (no STUN) by default.

    An empty list matters: with ``iceServers=None`` aiortc falls back to a public STUN server.
    """
    servers = [
        RTCIceServer(urls=url, username=config.ice_username, credential=config.ice_credential)
        for url in config.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


def create_peer(config: ServerConfig) -> RTCPeerConnection:
    """A new peer connection configured from ``config`` (loopback candidates if enabled)."""
    if config.ice_loopback:
        enable_loopback_candidates()
    return RTCPeerConnection(configuration=rtc_configuration(config))
