"""The server helpers themselves: real servers, loopback only, stopped on exit, and a start-up
failure that says why (the server's own log lines)."""

from __future__ import annotations

import shutil
import socket

import pytest

from artsim_pipeline_tests import servers


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_is_a_password_protected_loopback_server(postgres):
    import psycopg2

    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW listen_addresses")
            assert cursor.fetchone() == ("127.0.0.1",)
            cursor.execute("SHOW server_version_num")
            assert int(cursor.fetchone()[0]) >= 150000
    finally:
        connection.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, password="wrong", dbname=postgres.dbname)


def test_redis_answers_and_is_stopped_on_exit(redis, tmp_path):
    client = redis.client()
    client.set("artsim:probe", "1")
    assert client.get("artsim:probe") == b"1"
    assert redis.url().startswith("redis://127.0.0.1:")

    with servers.redis_server(tmp_path) as other:  # a second, independent one on another port
        assert other.port != redis.port and other.client().get("artsim:probe") is None
    assert not port_open(other.port)


def test_a_server_that_cannot_start_reports_its_log(tmp_path):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = servers.start_process("redis-server", [binary, "--no-such-directive", "1"], tmp_path / "bad.log")
    try:
        with pytest.raises(servers.ServerStartError, match=r"(?s)exited before answering PING.*no-such-directive"):
            servers.wait_until(process, lambda: False, 20, "answering PING")
    finally:
        process.stop()
    assert not process.alive()
