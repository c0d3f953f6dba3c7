#!/usr/bin/env python3
"""The agent-vault portal (/ui, issue 18) in a real headless browser.

Starts a real agent-vault (AGENT_VAULT_BIN, else target/debug/agent-vault) and agent-run
(AGENT_RUN_BIN, else target/debug/agent-run) on loopback and drives Debian's chromium
through Debian's chromedriver with Selenium (nothing is downloaded: the driver path is
given and Selenium Manager runs offline). Covers: sign in with the keyboard only; create an agent's secrets;
rotate one and see a running agent-run's child restarted with the new value (and the row
marked delivered); edit a description; roll back (the child restarted with the old value);
import a .env file (a broken one imports nothing); delete with a confirmation; issue and
revoke tokens (the secret shown once); the audit page with a filter; a phone-width view;
sign-out; a change without the CSRF header refused; a read token refused; a write token
that sees only its agent. No value anywhere in the page source, the DOM (input fields
included), the URL, any response body the page received, or the logs of agent-vault and
agent-run. No CSP violation or script error in the browser console; axe-core finds no
serious or critical accessibility violation on any page. Screenshots (and axe.json) go to
target/browser-artifacts/.

Run: python3 tests/browser/portal_test.py   (scripts/test-all.sh does, after the build)
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "target", "browser-artifacts")
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
# axe-core (npm), installed by scripts/test-all.sh under target/browser-deps/.
AXE_JS = os.environ.get("AXE_CORE_JS") or os.path.join(
    ROOT, "target", "browser-deps", "node_modules", "axe-core", "axe.min.js")

VALUES = {
    "first": "sk_live_portal_first_value_W1x9",
    "second": "openai-portal-second-value-Q7r2",
    "rotated": "sk_live_portal_rotated_value_K4m8",
    "imported": "imported-p$ss-value-Z3v6",
    "not imported": "never-imported-value-Y5u1",
}


def vault_bin():
    path = os.environ.get("AGENT_VAULT_BIN") or os.path.join(ROOT, "target", "debug", "agent-vault")
    if not os.access(path, os.X_OK):
        sys.exit(f"agent-vault binary not found at {path}: build it or set AGENT_VAULT_BIN")
    return path


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_VAULT_") and k != "RUST_LOG"}


class Vault:
    """A real agent-vault on 127.0.0.1:0 with a fresh data directory."""

    def __init__(self, workdir):
        data = os.path.join(workdir, "data")
        init = subprocess.run([vault_bin(), "init", "--data-dir", data], env=clean_env(),
                              capture_output=True, text=True, check=True)
        self.admin = init.stdout.strip()
        assert self.admin.startswith("avt_"), init
        self.proc = subprocess.Popen(
            [vault_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "-vvv"],
            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.log = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                if line.startswith("agent-vault listening on "):
                    self.addr = line.split("listening on ", 1)[1].strip()
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(20):
            self.stop()
            sys.exit("agent-vault did not start:\n" + "".join(self.log))

    def api(self, method, path, body=None):
        req = urllib.request.Request(self.addr + path, method=method,
                                     headers={"Authorization": "Bearer " + self.admin})
        if body is not None:
            req.data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=20) as resp:
            text = resp.read().decode()
            return json.loads(text) if text else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Launcher:
    """A real agent-run supervising a child that records the digest of STRIPE_KEY at each
    start (never the value), so a rotation in the portal is seen as a restart."""

    def __init__(self, workdir, vault, token):
        binary = os.environ.get("AGENT_RUN_BIN") or os.path.join(ROOT, "target", "debug", "agent-run")
        if not os.access(binary, os.X_OK):
            sys.exit(f"agent-run binary not found at {binary}: build it or set AGENT_RUN_BIN")
        self.seen = os.path.join(workdir, "seen")
        env = {k: v for k, v in clean_env().items() if not k.startswith("AGENT_RUN_")}
        env["AGENT_RUN_TOKEN"] = token
        child = 'printf %s "$STRIPE_KEY" | sha256sum | cut -c1-64 >> "$SEEN"; exec sleep 600'
        env["SEEN"] = self.seen
        self.log = []
        self.proc = subprocess.Popen(
            [binary, "--store", vault.addr, "--grace", "2s", "--", "sh", "-c", child],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def starts(self):
        try:
            with open(self.seen, encoding="utf-8") as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def wait_for(self, digests, what):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.starts() == digests:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{what}: the child's starts were {self.starts()}, expected "
                             f"{digests}; agent-run log:\n{''.join(self.log)}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Page:
    def __init__(self, driver, base, workdir):
        self.d = driver
        self.base = base
        self.workdir = workdir
        self.launchers = []
        self.sources = []
        self.a11y = {}

    def wait(self, condition, timeout=20):
        return WebDriverWait(self.d, timeout).until(condition)

    def by_id(self, element_id):
        return self.d.find_element(By.ID, element_id)

    def visible(self, element_id):
        return self.wait(EC.visibility_of_element_located((By.ID, element_id)))

    def text_in(self, element_id, text):
        self.wait(EC.text_to_be_present_in_element((By.ID, element_id), text))

    def fill(self, element_id, text):
        field = self.by_id(element_id)
        field.clear()
        field.send_keys(text)

    def click(self, label):
        """Click the button labelled `label`, waiting for it: tables are re-rendered after
        each call, so a button found a moment ago may be gone."""
        locator = (By.CSS_SELECTOR, f'button[aria-label="{label}"]')

        def attempt(driver):
            try:
                driver.find_element(*locator).click()
                return True
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        self.wait(attempt)

    def accept_confirm(self):
        self.wait(EC.alert_is_present())
        self.d.switch_to.alert.accept()

    def shot(self, name):
        self.d.execute_script("window.scrollTo(0, 0)")
        self.d.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))

    def assert_accessible(self, where):
        """axe-core on the page as it is now: no serious or critical violation (WCAG 2.x A/AA
        rules, colour contrast included). Injected by WebDriver, which the page's CSP does
        not govern; the page itself loads no third-party script."""
        if not self.d.execute_script("return typeof window.axe === 'object'"):
            with open(AXE_JS, encoding="utf-8") as f:
                self.d.execute_script(f.read())
        result = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
        self.a11y[where] = result
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert not bad, f"{where}: accessibility violations: {json.dumps(bad, indent=1)}"

    def assert_no_values(self, where):
        """No value in the page source, the live DOM, any input field, or the URL."""
        dom = self.d.execute_script("return document.documentElement.outerHTML")
        inputs = self.d.execute_script(
            "return Array.from(document.querySelectorAll('input')).map(i => i.value).join('\\n')")
        bodies = self.d.execute_script("return (window.__bodies || []).join('\\n')")
        assert bodies, "the response recorder saw no response"
        texts = {"page source": self.d.page_source, "DOM": dom, "input values": inputs,
                 "URL": self.d.current_url, "responses the page received": bodies}
        self.sources.extend(texts.values())
        for what, text in texts.items():
            for name, value in VALUES.items():
                assert value not in text, f"{where}: value {name} found in the {what}"


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    if not os.path.exists(AXE_JS):
        sys.exit(f"axe-core not found at {AXE_JS}: npm install --prefix target/browser-deps "
                 "axe-core (scripts/test-all.sh does), or set AXE_CORE_JS")
    workdir = tempfile.mkdtemp(prefix="portal-browser-")
    vault = Vault(workdir)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100", f"--user-data-dir={workdir}/profile"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download anything.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # Keep a copy of every response body the page's script receives, to search for values.
    # (Injected by the DevTools protocol before the page's own script; test-only.)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__bodies = [];
        const realFetch = window.fetch.bind(window);
        window.fetch = async (...args) => {
          const response = await realFetch(...args);
          response.clone().text().then((t) => window.__bodies.push(t), () => {});
          return response;
        };"""})
    started = time.monotonic()
    page = Page(driver, vault.addr, workdir)
    try:
        run(page, vault)
    except Exception:
        driver.save_screenshot(os.path.join(ARTIFACTS, "failure.png"))
        print("server log:\n" + "".join(vault.log[-40:]), file=sys.stderr)
        raise
    finally:
        driver.quit()
        for launcher in page.launchers:
            launcher.stop()
        vault.stop()
    log = "".join(vault.log) + "".join(line for l in page.launchers for line in l.log)
    for name, value in VALUES.items():
        assert value not in log, f"value {name} in the server's or agent-run's log"
    with open(os.path.join(ARTIFACTS, "axe.json"), "w", encoding="utf-8") as f:
        json.dump(page.a11y, f, indent=1)
    minor = sum(len(v) for v in page.a11y.values())
    print(f"axe-core: no serious or critical violation on {len(page.a11y)} pages "
          f"({minor} moderate/minor, in {ARTIFACTS}/axe.json)")
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"portal browser test: ok ({time.monotonic() - started:.1f} s); screenshots in {ARTIFACTS}")


def run(p, vault):
    d = p.d
    d.get(vault.addr + "/ui")
    p.visible("signin-token")
    assert d.title == "agent-vault"
    p.shot("signin")
    p.assert_accessible("sign-in page")

    # Sign in as admin with the keyboard only: Tab reaches the token field, Enter submits.
    focused = None
    for _ in range(10):
        d.switch_to.active_element.send_keys(Keys.TAB)
        focused = d.switch_to.active_element.get_attribute("id")
        if focused == "signin-token":
            break
    assert focused == "signin-token", f"Tab never reached the token field (at {focused!r})"
    d.switch_to.active_element.send_keys(vault.admin + Keys.ENTER)
    p.visible("nav")
    admin_id = vault.admin.split("_")[1]
    p.text_in("whoami", admin_id)
    assert p.by_id("signin-token").get_attribute("value") == "", "token field cleared"
    p.text_in("agents-body", "No agents yet.")

    # Create an agent's secrets.
    p.fill("open-agent-name", "support-bot")
    p.by_id("open-agent-form").submit()
    p.text_in("agent-title", "Agent support-bot")
    for key, value, description in [("STRIPE_KEY", VALUES["first"], "Stripe live key"),
                                    ("OPENAI_KEY", VALUES["second"], "OpenAI key")]:
        p.fill("set-key", key)
        p.fill("set-value", value)
        p.fill("set-description", description)
        p.by_id("set-save").click()
        p.text_in("status", f"Created {key}")
        assert p.by_id("set-value").get_attribute("value") == "", "value field cleared after save"
    p.text_in("entries-body", "****W1x9")
    p.text_in("entries-body", "****Q7r2")
    p.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'td[data-delivery="STRIPE_KEY"]').text
           == "never read")
    p.assert_no_values("after creating secrets")

    # A running launcher of this agent, started with the first value.
    reader = vault.api("POST", "/v1/tokens", {"scopes": ["secrets:read:support-bot/*"]})["token"]
    launcher = Launcher(p.workdir, vault, reader)
    p.launchers.append(launcher)
    launcher.wait_for([sha256(VALUES["first"])], "agent-run's first start")

    # Tags and tier (issue 14), set through the API: shown per entry at the next reload.
    vault.api("PUT", "/v1/agents/support-bot/secrets/OPENAI_KEY",
              {"tags": {"team": "ml"}, "tier": "sensitive"})

    # Rotate one.
    p.click("Rotate STRIPE_KEY")
    assert p.by_id("set-key").get_attribute("value") == "STRIPE_KEY"
    assert d.switch_to.active_element == p.by_id("set-value"), "focus moves to the value field"
    p.fill("set-value", VALUES["rotated"])
    p.by_id("set-save").click()
    p.text_in("status", "Saved STRIPE_KEY (version 2)")
    p.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'td[data-tags="OPENAI_KEY"]').text
           == "team=ml")
    assert d.find_element(By.CSS_SELECTOR, 'td[data-tier="OPENAI_KEY"]').text == "sensitive"
    assert d.find_element(By.CSS_SELECTOR, 'td[data-tier="STRIPE_KEY"]').text == "standard"
    p.text_in("entries-body", "****K4m8")
    p.assert_no_values("after rotating")
    # The running child is restarted with the new value, and the row shows it arrived.
    launcher.wait_for([sha256(VALUES["first"]), sha256(VALUES["rotated"])], "rotation")
    p.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'td[data-delivery="STRIPE_KEY"]').text
           == "delivered")

    # Edit a description only: an empty value field keeps the value (same version).
    p.click("Rotate OPENAI_KEY")
    p.fill("set-description", "OpenAI key (edited)")
    p.by_id("set-save").click()
    p.text_in("status", "Saved OPENAI_KEY (version 1)")
    p.text_in("entries-body", "OpenAI key (edited)")
    p.shot("agent")
    p.assert_accessible("agent page")

    # Versions and roll back to 1.
    p.click("Versions of STRIPE_KEY")
    p.visible("versions")
    p.click("Roll back STRIPE_KEY to version 1")
    p.accept_confirm()
    p.text_in("status", "Rolled STRIPE_KEY back to version 1 (now version 3)")
    p.text_in("entries-body", "****W1x9")
    launcher.wait_for([sha256(VALUES[k]) for k in ("first", "rotated", "first")], "rollback")

    # Import a .env file: a broken one imports nothing; a good one keeps `$` literally.
    broken = os.path.join(p.workdir, "broken.env")
    with open(broken, "w", encoding="utf-8") as f:
        f.write(f"NEW_KEY={VALUES['not imported']}\nOTHER='unterminated\n")
    p.by_id("import-file").send_keys(broken)
    p.by_id("import-form").submit()
    p.text_in("error", "line 2")
    assert "NEW_KEY" not in p.by_id("entries-body").text
    assert p.by_id("import-file").get_attribute("value") == "", "file input cleared"
    good = os.path.join(p.workdir, "good.env")
    with open(good, "w", encoding="utf-8") as f:
        f.write(f"# imported in the portal\nexport IMPORTED_KEY='{VALUES['imported']}'\n"
                f"STRIPE_KEY={VALUES['not imported']}\nREGION=eu-west-3\n")
    p.fill("import-plain-keys", "REGION")
    p.by_id("import-file").send_keys(good)
    p.by_id("import-form").submit()
    p.text_in("status", "created: IMPORTED_KEY, REGION; overwritten: none; skipped: STRIPE_KEY")
    p.text_in("entries-body", "****Z3v6")
    p.assert_no_values("after import")
    os.remove(broken)
    os.remove(good)
    launcher.wait_for([sha256(VALUES[k]) for k in ("first", "rotated", "first", "first")],
                      "an import of new keys restarts the child; STRIPE_KEY kept (no overwrite)")

    # Delete one, after a confirmation (dismissing it keeps the entry).
    p.click("Delete OPENAI_KEY")
    p.wait(EC.alert_is_present())
    d.switch_to.alert.dismiss()
    assert "OPENAI_KEY" in p.by_id("entries-body").text
    p.click("Delete OPENAI_KEY")
    p.accept_confirm()
    p.text_in("status", "Deleted OPENAI_KEY")
    assert "OPENAI_KEY" not in p.by_id("entries-body").text
    p.assert_no_values("after delete")

    # Agents page shows the count.
    d.find_element(By.CSS_SELECTOR, '#nav button[data-view="agents"]').click()
    p.text_in("agents-body", "support-bot")
    p.shot("agents")
    p.assert_accessible("agents page")

    # Tokens: issue a read token, a write token and one to revoke; each shown once.
    d.find_element(By.CSS_SELECTOR, '#nav button[data-view="tokens"]').click()
    p.visible("issue-form")

    def issue(action, agent, description, keep_fields=False):
        if not keep_fields:
            p.by_id("issue-action").send_keys(action)
            p.fill("issue-agent", agent)
        p.fill("issue-description", description)
        p.fill("issue-ttl", "1h")
        p.by_id("issue-form").submit()
        p.visible("issued")
        token = p.by_id("issued-token").get_attribute("value")
        assert token.startswith("avt_"), token
        p.by_id("issued-done").click()
        assert p.by_id("issued-token").get_attribute("value") == ""
        p.text_in("tokens-body", description)
        return token

    reader = issue("read", "support-bot", "portal test reader")
    writer = issue("manage", "other-bot", "portal test writer")
    # Two scopes in one token, with the builder.
    p.by_id("issue-action").send_keys("read")
    p.fill("issue-agent", "support-bot")
    p.fill("issue-pattern", "STRIPE_*")
    p.by_id("issue-add-scope").click()
    p.by_id("issue-action").send_keys("manage")
    p.fill("issue-pattern", "*")
    p.by_id("issue-add-scope").click()
    p.fill("issue-pattern", "STRIPE_*")
    two = issue("read", "support-bot", "portal test two scopes", keep_fields=True)
    two_id = two.split("_")[1]
    row = [t for t in vault.api("GET", "/v1/tokens")["tokens"] if t["id"] == two_id][0]
    assert row["scopes"] == ["secrets:read:support-bot/STRIPE_*", "secrets:write:support-bot/*"], row
    p.fill("issue-pattern", "*")
    doomed = issue("read", "support-bot", "portal test doomed")
    doomed_id = doomed.split("_")[1]
    p.click("Revoke token " + doomed_id)
    p.accept_confirm()
    p.text_in("status", "Revoked token " + doomed_id)
    buttons = d.find_elements(By.CSS_SELECTOR, f'button[aria-label="Revoke token {doomed_id}"]')
    assert not buttons, "a revoked token has no Revoke button"
    p.shot("tokens")
    p.assert_accessible("tokens page")
    tokens = vault.api("GET", "/v1/tokens")["tokens"]
    assert any(t["id"] == doomed_id and t["revoked_at"] for t in tokens), tokens

    # Audit with a filter.
    d.find_element(By.CSS_SELECTOR, '#nav button[data-view="audit"]').click()
    p.fill("audit-agent", "support-bot")
    p.by_id("audit-form").submit()
    p.text_in("audit-body", "STRIPE_KEY")
    p.text_in("audit-body", "rollback")
    p.assert_no_values("audit page")
    p.shot("audit")
    p.assert_accessible("audit page")

    # A narrow screen (a phone): nothing wider than the window but the tables' own scroll box.
    d.set_window_size(390, 844)
    d.find_element(By.CSS_SELECTOR, '#nav button[data-view="agents"]').click()
    p.click("Open agent support-bot")
    p.text_in("entries-body", "STRIPE_KEY")
    widths = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page wider than a narrow window: {widths}"
    p.shot("agent-narrow")
    p.assert_accessible("agent page, narrow")
    d.set_window_size(1280, 1100)

    # Sign out; the page asks for a token again and the old session is gone.
    p.by_id("signout").click()
    p.visible("signin-token")
    p.text_in("status", "Signed out.")
    status = d.execute_async_script(
        "const done = arguments[0]; fetch('/ui/api/session').then(r => done(r.status));")
    assert status == 401, status

    # CSRF: a change with the session cookie but without the header is refused.
    p.fill("signin-token", vault.admin)
    p.by_id("signin-form").submit()
    p.visible("nav")
    status = d.execute_async_script("""
        const done = arguments[0];
        fetch('/v1/agents/support-bot/secrets/CSRF_PROBE', {method: 'PUT',
          headers: {'Content-Type': 'application/json'}, body: JSON.stringify({value: 'csrf-probe-1234'})})
          .then(r => done(r.status));""")
    assert status == 403, status
    assert vault.api("GET", "/v1/agents/support-bot/secrets")["secrets"], "agent still there"
    assert all(e["key"] != "CSRF_PROBE"
               for e in vault.api("GET", "/v1/agents/support-bot/secrets")["secrets"])
    p.by_id("signout").click()
    p.visible("signin-token")

    # A read token is refused with a clear message.
    p.fill("signin-token", reader)
    p.by_id("signin-form").submit()
    p.text_in("error", "read-only token")
    assert not p.by_id("nav").is_displayed()

    # A write token sees only its agent.
    p.fill("signin-token", writer)
    p.by_id("signin-form").submit()
    p.visible("nav")
    p.text_in("agents-body", "other-bot")
    assert "support-bot" not in p.by_id("agents-body").text
    assert not d.find_element(By.CSS_SELECTOR, '#nav button[data-view="tokens"]').is_displayed()
    p.fill("open-agent-name", "support-bot")
    p.by_id("open-agent-form").submit()
    p.text_in("error", "may not list for agent support-bot")
    p.assert_no_values("write token")

    # History: one entry per URL; no value in any URL visited.
    history = d.execute_script("return [history.length, location.href]")
    assert history[1] == vault.addr + "/ui", history

    # The console saw no CSP violation and no script error.
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    allowed = ("/favicon.ico", "401 (Unauthorized)", "403 (Forbidden)", "400 (Bad Request)")
    problems = [e for e in errors if not any(a in e["message"] for a in allowed)]
    assert not problems, problems
    csp = [e for e in d.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not csp, csp


if __name__ == "__main__":
    main()
