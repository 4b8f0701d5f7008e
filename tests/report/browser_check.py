#!/usr/bin/python3
"""Opens a graft HTML report in headless Chromium and checks what a reader sees.

    browser_check.py REPORT.html MODEL.json SCREENSHOT.png

MODEL.json is `graft --json models show MODEL` (the proto JSON of GetModel).
Chromium is driven through the DevTools protocol over a pipe
(--remote-debugging-pipe: fd 3 in, fd 4 out, NUL-separated JSON), so nothing
beyond Python's standard library is needed. Checks:
  - the page loads with no console error, no uncaught exception and no log
    error (a Content-Security-Policy violation is one);
  - no request leaves the page (only the file itself and data: thumbnails);
  - each learning curve (train/val loss and accuracy) holds one point per
    epoch of the model's history, with a stage boundary per new stage and a
    marker per restored epoch;
  - the confusion matrix's cells equal the report's;
  - every thumbnail decoded (natural width > 0);
then writes a full-page PNG screenshot. Exit 0 when all hold; otherwise each
failure is printed and the exit code is 1.
"""
import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self):
        chrome = shutil.which("chromium") or shutil.which("chromium-browser")
        if chrome is None:
            raise SystemExit("chromium is not installed (apt install chromium)")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # Above 10, so moving them onto 3 and 4 in the child cannot clobber either.
        to_child_r_hi = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        from_child_w_hi = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire():
            os.dup2(to_child_r_hi, 3)
            os.dup2(from_child_w_hi, 4)

        self.profile = tempfile.mkdtemp(prefix="graft-chromium-")
        args = [chrome, "--headless=new", "--remote-debugging-pipe", "--disable-gpu",
                "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio",
                "--window-size=1280,900", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses root otherwise
        self.proc = subprocess.Popen(args, preexec_fn=wire, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r_hi)
        os.close(from_child_w_hi)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if ready:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        message, self.buf = self.buf.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read_message(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


PAGE_FACTS = r"""(() => {
  const series = {};
  for (const g of document.querySelectorAll('svg g.series')) {
    series[g.dataset.series] = Array.from(g.querySelectorAll('circle.point')).map(c => Number(c.dataset.epoch));
  }
  const cells = Array.from(document.querySelectorAll('#confusion td.cell')).map(
      td => [Number(td.dataset.true), Number(td.dataset.predicted), Number(td.textContent)]);
  const images = Array.from(document.querySelectorAll('#hardest img')).map(i => [i.complete, i.naturalWidth]);
  return {
    title: document.title,
    svgs: document.querySelectorAll('svg').length,
    series: series,
    boundaries: document.querySelectorAll('#loss-chart line.stage-boundary').length,
    restored: Array.from(document.querySelectorAll('#loss-chart line.restored')).map(l => Number(l.dataset.epoch)),
    cells: cells,
    images: images,
    reliability_bars: document.querySelectorAll('#reliability rect.rel-bar').length,
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
  };
})()"""


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    page = pathlib.Path(sys.argv[1]).resolve()
    model = json.loads(pathlib.Path(sys.argv[2]).read_text())
    screenshot = pathlib.Path(sys.argv[3])
    failures = []
    browser = Browser()
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(domain + ".enable", session=session)
        browser.events.clear()
        browser.call("Page.navigate", {"url": page.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        browser.drain(1.0)  # late console messages and requests
        facts = browser.call("Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True},
                             session=session)["result"]["value"]
        width, height = max(1280, facts["width"]), min(max(900, facts["height"]), 16000)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        browser.drain(0.2)
    finally:
        browser.close()

    for e in browser.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            failures.append(f"uncaught exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            failures.append(f"console {params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            failures.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page.as_uri() and not url.startswith("data:"):
                failures.append(f"network request: {url}")

    epochs = [int(h["epoch"]) for h in model.get("history", [])]
    if not epochs:
        failures.append("the model has no history to draw")
    for s in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        if facts["series"].get(s) != epochs:
            failures.append(f"curve {s}: points at epochs {facts['series'].get(s)}, the history has {epochs}")
    stages = [int(h.get("stage", 0)) for h in model.get("history", [])]
    boundaries = sum(1 for a, b in zip(stages, stages[1:]) if a != b)
    if facts["boundaries"] != boundaries:
        failures.append(f"{facts['boundaries']} stage boundaries drawn, the history has {boundaries}")
    restored = [int(e) for e in model.get("restoredEpochs", [])]
    if facts["restored"] != restored:
        failures.append(f"restored epochs marked {facts['restored']}, the model says {restored}")
    report = model.get("report", {})
    c = len(report.get("classes", []))
    confusion = [int(v) for v in report.get("confusion", [])]
    if c == 0 or len(confusion) != c * c:
        failures.append("the model has no confusion matrix to compare")
    # The page shows every class up to 50 (then the 50 most involved in errors).
    shown = min(c, 50)
    if len(facts["cells"]) != shown * shown:
        failures.append(f"{len(facts['cells'])} confusion cells shown for {c} classes")
    for t, q, v in facts["cells"]:
        if not (0 <= t < c and 0 <= q < c) or v != confusion[t * c + q]:
            failures.append(f"confusion[{t}][{q}]: page shows {v}, the report has "
                            f"{confusion[t * c + q] if 0 <= t < c and 0 <= q < c else 'no such cell'}")
    hardest = report.get("highestLoss", [])
    if len(facts["images"]) != sum(1 for h in hardest if h.get("thumbnail")):
        failures.append(f"{len(facts['images'])} thumbnails shown for {len(hardest)} highest-loss images")
    for i, (complete, natural_width) in enumerate(facts["images"]):
        if not complete or natural_width <= 0:
            failures.append(f"thumbnail {i} did not decode")
    if facts["reliability_bars"] != sum(1 for b in report.get("reliability", []) if int(b.get("count", 0)) > 0):
        failures.append("the reliability diagram's bars are not the report's non-empty bins")
    if screenshot.stat().st_size < 10_000:
        failures.append(f"the screenshot is only {screenshot.stat().st_size} bytes")

    print(json.dumps({k: facts[k] for k in ("title", "svgs", "boundaries", "restored", "width", "height")}))
    print(f"{len(epochs)} epochs, {c}x{c} confusion, {len(facts['images'])} thumbnails, "
          f"{len(browser.events)} browser events; screenshot {screenshot} ({screenshot.stat().st_size} bytes)")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
