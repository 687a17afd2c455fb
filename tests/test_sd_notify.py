"""sd_notify over a real AF_UNIX datagram socket, as systemd would receive it."""

import socket

from kiosk.shell.sd_notify import SystemdNotifier


def test_messages_reach_the_notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    try:
        n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
        assert n.enabled and n.ping_interval() == 10
        n.ready()
        n.watchdog()
        n.stopping()
        n.stopping()                    # second on_stop: no second message
        got = [server.recv(64).decode() for _ in range(3)]
        assert got == ["READY=1", "WATCHDOG=1", "STOPPING=1"]
        server.setblocking(False)
        try:
            extra = server.recv(64)
        except BlockingIOError:
            extra = None
        assert extra is None
    finally:
        server.close()


def test_no_socket_means_no_op():
    n = SystemdNotifier({})
    assert not n.enabled and n.ping_interval() is None
    n.ready()
    n.watchdog()
