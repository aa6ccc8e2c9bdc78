"""``ttg dashboard``: a live web page of the sweeps (ASGI: Starlette + uvicorn, the
``dashboard`` extra). app.py is the app, server.py runs it, static/ is the page."""
