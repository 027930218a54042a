"""A ZeroMQ client; first run: tmn-serve"""
import math

import tmn

with tmn.Client("tcp://127.0.0.1:5555") as c:
    for i in range(1000):
        t = i / 1000.0
        p = c.tick(t=t, x=100 * math.cos(2 * t), y=100 * math.sin(2 * t), stream=1)
    print("verdict", p["verdict"], "500 ms ahead:", p["path"][-1])
