"""Test-only SMTP sink: accepts mail on 127.0.0.1:<port> and writes each
message to <dir>/<n>.eml (raw DATA) and <dir>/<n>.env (MAIL FROM, then one
RCPT TO per line). Recipients starting with "reject" get 550. Writes
<dir>/ready once listening; exits on SIGTERM.

usage: smtp_sink.py PORT DIR
"""

import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.directory, str(n))
        with open(base + ".env.tmp", "w") as f:
            f.write("\n".join([envelope.mail_from] + envelope.rcpt_tos))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".env.tmp", base + ".env")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 Message accepted"


def main():
    port = int(sys.argv[1])
    directory = sys.argv[2]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with open(os.path.join(directory, "ready.tmp"), "w") as f:
            f.write(str(port))
        os.rename(os.path.join(directory, "ready.tmp"),
                  os.path.join(directory, "ready"))
        done.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
