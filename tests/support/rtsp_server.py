"""Serve video files over RTSP on 127.0.0.1 with Debian's GStreamer RTSP server, for tests.

Runs under the system Python, which has python3-gi; the test suite's virtual environment does not.
Usage: /usr/bin/python3 rtsp_server.py PORT [MOUNT=FILE.mp4 ...] [--launch MOUNT=PIPELINE ...] [--user NAME:PASSWORD]
A MOUNT=FILE.mp4 mount passes the file's H.264 through. A --launch mount serves a gst-launch pipeline
description whose last element is named pay0, for other codecs, containers or caps.
Prints "READY <port>" once the server listens; stops on SIGTERM or SIGINT.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Serve test media over RTSP on 127.0.0.1.")
    parser.add_argument("port")
    parser.add_argument("mounts", nargs="*", metavar="MOUNT=FILE.mp4")
    parser.add_argument("--launch", action="append", default=[], metavar="MOUNT=PIPELINE")
    parser.add_argument("--user", metavar="NAME:PASSWORD")
    args = parser.parse_args(argv)
    Gst.init(None)
    port, user = args.port, args.user

    launches = []
    for mount in args.mounts:
        path, _, file_name = mount.partition("=")
        # H.264 is passed through without re-encoding.
        launches.append((path, f'( filesrc location="{file_name}" ! qtdemux ! h264parse config-interval=-1 '
                               '! rtph264pay name=pay0 pt=96 )'))
    launches += [tuple(mount.partition("=")[::2]) for mount in args.launch]

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    for path, launch in launches:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        # Each client gets its own pipeline, which starts at the beginning of the media.
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
