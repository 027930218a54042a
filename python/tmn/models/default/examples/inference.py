"""In-process inference (first: pip install tmn)."""
import numpy as np

import tmn

engine = tmn.Engine(tmn.load(), precision="int8")
t = np.arange(2000) / 1000.0                      # 2 s of a circle at 1 kHz
x, y = 100 * np.cos(2 * t), 100 * np.sin(2 * t)
for ti, xi, yi in zip(t, x, y):
    p = engine.tick(float(ti), float(xi), float(yi), stream=1)
print("verdict", p.verdict, "500 ms ahead:", p.path[-1], "cert", p.cert_error)
