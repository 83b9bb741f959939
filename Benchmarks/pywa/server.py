"""The comparison point for `make bench`'s WhatsApp phase: pywa (a Python WhatsApp Cloud API
framework) on FastAPI + uvicorn, receiving the same signed notifications as Switchboard.

pywa verifies X-Hub-Signature-256, parses the update into its Message type and calls the
handler; it stores nothing, so it does strictly less work per webhook than Switchboard (which
also commits the message durably before answering).

usage: python3 server.py PORT APP_SECRET PHONE_NUMBER_ID
"""
import logging
import sys

import fastapi
import uvicorn
from pywa import WhatsApp, types

port, app_secret, phone_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = fastapi.FastAPI()
wa = WhatsApp(
    phone_id=phone_id,
    token="not-used-no-outbound-calls",
    server=app,
    webhook_endpoint="/webhooks/wa",
    verify_token="bench-verify-token",
    app_secret=app_secret,
    validate_updates=True,
)
received = 0


@wa.on_message
def on_message(_: WhatsApp, msg: types.Message) -> None:
    global received
    received += 1


@app.get("/stats")
def stats() -> dict:
    return {"received": received}


if __name__ == "__main__":
    print(f"ready 127.0.0.1:{port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
