"""The live tests' HTTP client: makes requests and prints a JSON log of what it got.

usage: http_client.py HOST PORT CONNECTIONS REQUESTS_PER_CONNECTION [SECONDS]
With SECONDS, it keeps going (new connections) until that much time has passed.
"""

from __future__ import annotations

import http.client
import json
import sys
import time


def one_connection(host: str, port: int, number: int, requests: int) -> list[dict[str, object]]:
    """Several requests on one keep-alive connection: GETs of varied sizes, a POST, a 404."""
    log: list[dict[str, object]] = []
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for index in range(requests):
        if index % 5 == 3:
            method, path, body = "POST", f"/echo?c={number}&r={index}", b"p" * (index * 7 + 1)
        elif index % 5 == 4:
            method, path, body = "GET", f"/missing/{number}/{index}", None
        else:
            method, path, body = "GET", f"/item/{(number * 37 + index * 101) % 3000}", None
        conn.request(method, path, body=body)
        response = conn.getresponse()
        data = response.read()
        log.append({"method": method, "uri": path, "status": response.status,
                    "request_body_len": len(body or b""), "response_body_len": len(data),
                    "done": time.time()})
    conn.close()
    return log


def main() -> None:
    """Run the plan in argv and print the log."""
    host, port, connections, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4])
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    log: list[dict[str, object]] = []
    started = time.monotonic()
    number = 0
    while True:
        for _ in range(connections):
            log += one_connection(host, port, number, requests)
            number += 1
        if time.monotonic() - started >= seconds:
            break
    print(json.dumps(log))


if __name__ == "__main__":
    main()
