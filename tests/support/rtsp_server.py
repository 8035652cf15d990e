"""Serve video files over RTSP on 127.0.0.1 with Debian's GStreamer RTSP server, for tests.

Runs under the system Python, which has python3-gi; the test suite's virtual environment does not.
Usage: /usr/bin/python3 rtsp_server.py PORT MOUNT=FILE.mp4 [MOUNT=FILE.mp4 ...] [--user NAME:PASSWORD]
Prints "READY <port>" once the server listens; stops on SIGTERM or SIGINT.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(argv: list[str]) -> int:
    Gst.init(None)
    port = argv[0]
    mounts = [arg for arg in argv[1:] if "=" in arg and not arg.startswith("--")]
    user = argv[argv.index("--user") + 1] if "--user" in argv else None

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    for mount in mounts:
        path, _, file_name = mount.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        # H.264 is passed through without re-encoding; each client gets its own pipeline from the start.
        factory.set_launch(
            f'( filesrc location="{file_name}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
        )
        factory.set_shared(False)
        if user:
            name, _, password = user.partition(":")
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, name)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(name, password), token)
            server.set_auth(auth)
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role_from_structure(
                Gst.Structure.new_from_string(f"{name},media.factory.access=true,media.factory.construct=true")
            )
            factory.set_permissions(permissions)
        server.get_mount_points().add_factory(f"/{path}", factory)

    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", flush=True)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
