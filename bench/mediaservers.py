"""Local Janus and nginx-rtmp instances on loopback, for the tests and ``anchor bench fanout``.

Each instance writes its own configuration into a private folder (nothing system-wide is
read or changed), binds 127.0.0.1 on ports that were free a moment ago, is started in the
foreground as a child process and is always stopped by its owner (``with`` block). The
Debian packages ``janus`` and ``nginx`` + ``libnginx-mod-rtmp`` provide the binaries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from model.errors import AnchorError

JANUS_LIB_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/janus"),
    Path("/usr/lib/aarch64-linux-gnu/janus"),
    Path("/usr/lib/janus"),
    Path("/usr/local/lib/janus"),
    Path("/opt/janus/lib/janus"),
)
NGINX_RTMP_MODULES = (
    Path("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
    Path("/usr/local/lib/nginx/modules/ngx_rtmp_module.so"),
)
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) in seconds, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: state is field 3, utime 14, stime 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _find_binary(name: str, extra: tuple[str, ...] = ()) -> str:
    found = shutil.which(name) or next((p for p in extra if Path(p).is_file()), None)
    if found is None:
        raise AnchorError(f"{name} is not installed (Debian package: {name})")
    return found


def _wait_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise AnchorError(f"{log_path.name}: exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AnchorError(f"{log_path.name}: nothing listens on 127.0.0.1:{port} after start")


class _ChildProcess:
    """A foreground server child: started by ``start``, stopped (SIGTERM, then SIGKILL)."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise AnchorError(f"{self.name} is not running")
        return self.process.pid

    def _spawn(self, command: list[str], port: int) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            _wait_port(port, self.process, self.log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class LocalJanus(_ChildProcess):
    """Janus with only the WebSocket transport and the VideoRoom plugin, on 127.0.0.1.

    ``url`` is the WebSocket API (subprotocol ``janus-protocol``), bound to 127.0.0.1. No
    STUN, no ICE-TCP, no mDNS, no event handlers or loggers. libnice never gathers on the
    loopback interface (an enforce list naming it falls back to every interface), so Janus
    offers this machine's own host addresses: the media still never leaves the machine.
    """

    name = "janus"

    def __init__(self, folder: Path, session_timeout_s: int = 60) -> None:
        super().__init__(folder)
        self.port = free_port()
        # Janus ends a session that sent no request for this long (clients send keepalives).
        self.session_timeout_s = session_timeout_s

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _library_dir(self) -> Path:
        for folder in JANUS_LIB_DIRS:
            if (folder / "plugins" / "libjanus_videoroom.so").is_file():
                return folder
        raise AnchorError(
            "the Janus VideoRoom plugin was not found in "
            + ", ".join(str(folder) for folder in JANUS_LIB_DIRS)
            + " (Debian package: janus)"
        )

    def _write_config(self) -> Path:
        library = self._library_dir()
        configs = self.folder / "etc"
        plugins, transports = self.folder / "plugins", self.folder / "transports"
        for folder, name, kind in (
            (plugins, "libjanus_videoroom.so", "plugins"),
            (transports, "libjanus_websockets.so", "transports"),
        ):
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / name
            if not link.exists():
                link.symlink_to(library / kind / name)
        for empty in ("events", "loggers"):
            (self.folder / empty).mkdir(exist_ok=True)
        configs.mkdir(exist_ok=True)
        (configs / "janus.jcfg").write_text(
            "general: {\n"
            f'  configs_folder = "{configs}"\n'
            f'  plugins_folder = "{plugins}"\n'
            f'  transports_folder = "{transports}"\n'
            f'  events_folder = "{self.folder / "events"}"\n'
            f'  loggers_folder = "{self.folder / "loggers"}"\n'
            "  debug_level = 4\n"
            "  debug_colors = false\n"
            f"  session_timeout = {self.session_timeout_s}\n"
            "  hide_dependencies = true\n"
            "}\n"
            "media: {\n  ipv6 = false\n}\n"
            "nat: {\n"
            "  nice_debug = false\n"
            "  ice_tcp = false\n"
            "  full_trickle = false\n"
            "  ignore_mdns = true\n"
            "}\n"
            "events: {\n  broadcast = false\n}\n"
        )
        (configs / "janus.transport.websockets.jcfg").write_text(
            "general: {\n"
            '  json = "plain"\n'
            "  ws = true\n"
            f"  ws_port = {self.port}\n"
            '  ws_ip = "127.0.0.1"\n'
            "  wss = false\n"
            "}\n"
            "admin: {\n  admin_ws = false\n  admin_wss = false\n}\n"
        )
        (configs / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        return configs / "janus.jcfg"

    def start(self) -> LocalJanus:
        binary = _find_binary("janus", ("/usr/bin/janus", "/opt/janus/bin/janus"))
        config = self._write_config()
        self._spawn(
            [binary, "--config", str(config), "--configs-folder", str(config.parent)], self.port
        )
        return self

    def __enter__(self) -> LocalJanus:
        return self.start()


class LocalNginxRtmp(_ChildProcess):
    """nginx with the RTMP module: ``rtmp_url`` accepts pushes to application ``live``
    and writes HLS (``<hls_dir>/<stream>.m3u8`` + ``.ts``) with ``fragment_s`` fragments."""

    name = "nginx"

    def __init__(self, folder: Path, fragment_s: float = 1.0, playlist_s: float = 30.0) -> None:
        super().__init__(folder)
        self.port = free_port()
        self.http_port = free_port()
        self.fragment_s = fragment_s
        self.playlist_s = playlist_s
        self.hls_dir = self.folder / "hls"

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live"

    def playlist(self, stream: str) -> Path:
        return self.hls_dir / f"{stream}.m3u8"

    def _module(self) -> Path:
        for module in NGINX_RTMP_MODULES:
            if module.is_file():
                return module
        raise AnchorError(
            "the nginx RTMP module was not found in "
            + ", ".join(str(module) for module in NGINX_RTMP_MODULES)
            + " (Debian package: libnginx-mod-rtmp)"
        )

    def _write_config(self) -> Path:
        self.hls_dir.mkdir(parents=True, exist_ok=True)
        for folder in ("logs", "temp"):
            (self.folder / folder).mkdir(exist_ok=True)
        fragment_ms = round(self.fragment_s * 1000)
        playlist_ms = round(self.playlist_s * 1000)
        temp = self.folder / "temp"
        config = self.folder / "nginx.conf"
        config.write_text(
            f"load_module {self._module()};\n"
            "daemon off;\n"
            "master_process off;\n"
            "worker_processes 1;\n"
            f"pid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.folder / 'logs' / 'error.log'} info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"  access_log {self.folder / 'logs' / 'access.log'};\n"
            f"  client_body_temp_path {temp / 'body'};\n"
            f"  proxy_temp_path {temp / 'proxy'};\n"
            f"  fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"  uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"  scgi_temp_path {temp / 'scgi'};\n"
            "  server {\n"
            f"    listen 127.0.0.1:{self.http_port};\n"
            f"    location /hls/ {{ alias {self.hls_dir}/; }}\n"
            "  }\n"
            "}\n"
            "rtmp {\n"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            "    chunk_size 4096;\n"
            "    application live {\n"
            "      live on;\n"
            "      record off;\n"
            "      hls on;\n"
            f"      hls_path {self.hls_dir};\n"
            f"      hls_fragment {fragment_ms}ms;\n"
            f"      hls_playlist_length {playlist_ms}ms;\n"
            "      hls_cleanup off;\n"
            "    }\n"
            "  }\n"
            "}\n"
        )
        return config

    def start(self) -> LocalNginxRtmp:
        binary = _find_binary("nginx", ("/usr/sbin/nginx",))
        config = self._write_config()
        error_log = str(self.folder / "logs" / "error.log")
        self._spawn(
            [binary, "-p", f"{self.folder}/", "-e", error_log, "-c", str(config)], self.port
        )
        return self

    def __enter__(self) -> LocalNginxRtmp:
        return self.start()
