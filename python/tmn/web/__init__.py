"""The live browser demo (``tmn-client web``, docs/web-demo.md).

A page where a person moves the mouse, pen or finger and sees the predicted
50-500 ms path drawn ahead of the pointer. The page sends position-only ticks
over a WebSocket; the bridge runs the engines in-process and answers each
message with the newest prediction of every source.

* :mod:`tmn.web.session`: one browser connection's bounded input and its
  predictions (no networking; numpy and the engine only).
* :mod:`tmn.web.server`: the HTTP page and the WebSocket (``websockets``, the
  ``tmn[web]`` extra).
* :mod:`tmn.web.cli`: the command line that ``tmn-client web`` dispatches to.
* :mod:`tmn.web.launch`: start it as a process (the tests, docs/web-demo.py).
"""
