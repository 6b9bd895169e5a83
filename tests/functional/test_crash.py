"""kill -9 of the listener in the middle of a stream, then a restart: nothing lost."""
import os
import signal
import subprocess
import sys
import threading

import kombu

from devtools.simulator import CloudSimulator
from tests.conftest import AMQP_URL
from tests.functional.conftest import wait_for
from devtools.oracle import differences, stored


def start_listener_process(config_file, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "searchlight_forward.commands.listener",
         "--config-file", str(config_file)], stdout=log, stderr=subprocess.STDOUT)


def queue_exists(pool):
    with kombu.Connection(AMQP_URL) as conn:
        try:
            conn.channel().queue_declare(pool, passive=True)
            return True
        except Exception:  # noqa: BLE001 - not declared yet
            return False


def queued(pool):
    with kombu.Connection(AMQP_URL) as conn:
        return conn.channel().queue_declare(pool, passive=True).message_count


def stored_count(es, group):
    try:
        es.indices.refresh(index=f"{group}-listener")
        return es.count(index=f"{group}-listener")["count"]
    except Exception:  # noqa: BLE001 - index not created yet
        return 0


def test_kill_9_mid_stream_then_restart_loses_nothing(config_file, publisher, es, names,
                                                      tmp_path):
    simulator = CloudSimulator(seed=21)
    stream = simulator.stream(40)      # ~14 x 40 resources, thousands of events
    assert len(stream) >= 2000
    expected = simulator.expected

    log_path = tmp_path / "listener.log"
    proc = start_listener_process(config_file, log_path)
    try:
        wait_for(lambda: queue_exists(names["pool"]), 60, "the listener's queue")
        publishing = threading.Thread(
            target=lambda: [publisher.publish_simulated(s) for s in stream])
        publishing.start()
        # Kill it once some, but not all, of the stream is in Elasticsearch.
        wait_for(lambda: stored_count(es, names["group"]) > 200, 120, "the first documents")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = stored_count(es, names["group"])
        publishing.join(timeout=300)
        assert killed_at < 2 * len(expected), "the kill came too late to prove anything"
        # What the dead listener held unacknowledged is back in the queue, with the rest.
        assert queued(names["pool"]) > 0

        proc = start_listener_process(config_file, log_path)
        wait_for(lambda: not differences(expected, stored(es, names["group"])),
                 240, "the restarted listener to converge", interval=2.0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert differences(expected, stored(es, names["group"])) == []
