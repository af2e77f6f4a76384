package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/mbvm/mb/bench/testvm"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/service"
)

// miniDir is the prebuilt mini image: $MB_TEST_IMAGE_DIR, else
// ~/.mb/images/mini.
func miniDir(t *testing.T) string {
	if d := os.Getenv("MB_TEST_IMAGE_DIR"); d != "" {
		return d
	}
	h, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(h, ".mb", "images", "mini")
	if _, err := os.Stat(filepath.Join(d, "image.yaml")); err != nil {
		testenv.Need(t, "the mini image is not built (run `make image`): "+err.Error())
	}
	return d
}

// browserTimeout bounds the whole browser test; each wait inside it is
// generous, because CI is a loaded 2-core machine.
const browserTimeout = 8 * time.Minute

// waitJS evaluates a JavaScript boolean expression until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise))
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("timed out waiting for %s (%s); last error %q; page:\n%s", what, expr, last, html)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shoot saves a screenshot under docs/screenshots when MB_SCREENSHOTS=1,
// at 1280x800 and at a 390-wide phone size.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("MB_SCREENSHOTS") != "1" {
		return
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, size := range []struct {
		suffix string
		w, h   int64
	}{{"", 1280, 800}, {"-phone", 390, 844}} {
		if err := chromedp.Do(ctx,
			chromedp.EmulateViewport(size.w, size.h),
			chromedp.Sleep(300*time.Millisecond), // let the layout settle before the picture
		); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+size.suffix+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
}

// The dashboard in a real browser against a daemon running a real mini
// VM: an admin sees the VM and a fleet host live, watches the VM go down
// when its QEMU is killed (no reload), acknowledges the alert, and starts
// the VM again from its page; a monitor-role user sees only their host,
// without buttons, and the API refuses them.
func TestDashboardInBrowser(t *testing.T) {
	chromium := testenv.Tool(t, "chromium", "chromium")
	testenv.Tool(t, "qemu-system-x86_64", "qemu-system-x86")
	mini := miniDir(t)
	testvm.Slot(t)

	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.MkdirAll(filepath.Join(home, "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mini, filepath.Join(home, "images", "mini")); err != nil {
		t.Fatal(err)
	}
	hash := func(pw string) string {
		h, err := auth.Make(pw, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	writeMonitorConfig(t, home, fmt.Sprintf(`listen: 127.0.0.1:0
metrics_interval: 1s
users:
  alice: {admin: true, full_name: Alice Admin, password: %q}
  mona: {password: %q}
default_owner: alice
hosts:
  web: {owner: alice, monitors: [mona]}
  fleet-01: {owner: alice, interval: 3600}
`, hash("alice-pw"), hash("mona-pw")))

	td := startTestDaemon(t, home, nil)
	eng := td.monitorEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	if _, err := td.c.Create(ctx, []byte("name: web\nimage: mini\nrestart: \"no\"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Start(ctx, "web", 0); err != nil {
		t.Fatal(err)
	}
	// A fleet host, fed to the engine as the fleet receivers would.
	if err := eng.Heartbeat(ctx, "fleet-01", "heartbeat", "192.0.2.7", 3*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	td.d.mu.Lock()
	svc := td.d.mon.svc
	td.d.mu.Unlock()
	base := "http://" + svc.Addr().String()

	bctx, bcancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800))...)
	defer bcancel()
	bctx, bcancel2 := chromedp.NewContext(bctx)
	defer bcancel2()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	signIn := func(user, pw string) {
		t.Helper()
		run("sign in as "+user,
			chromedp.Navigate(base+"/live"),
			chromedp.WaitVisible(chromedp.ID("password")),
			chromedp.SendKeys(chromedp.ID("username"), user),
			chromedp.SendKeys(chromedp.ID("password"), pw),
			chromedp.Click(chromedp.ID("signin")),
		)
	}

	t.Run("wrong password", func(t *testing.T) {
		signIn("alice", "not-her-password")
		waitJS(t, bctx, "the sign-in error", `!!document.querySelector("#login-error") && location.pathname === "/login"`)
	})

	t.Run("admin", func(t *testing.T) {
		signIn("alice", "alice-pw")
		waitJS(t, bctx, "the live page with the VM up and the fleet host",
			`!!document.querySelector('tr[data-host="web"][data-reach="up"]') && !!document.querySelector('tr[data-host="fleet-01"]')`)
		waitJS(t, bctx, "the WebSocket", `document.querySelector("#conn").classList.contains("live")`)
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.mbMark = 42`)); err != nil {
			t.Fatal(err)
		}

		v, err := td.c.Inspect(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := v.Details["qemu_pid"].(float64)
		if pid <= 0 {
			t.Fatalf("no qemu_pid in %v", v.Details)
		}
		if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitJS(t, bctx, "the VM to turn down without a reload",
			`!!document.querySelector('tr[data-host="web"][data-reach="down"]') && window.mbMark === 42`)
		shoot(t, bctx, "live")

		run("open /alerts", chromedp.Navigate(base+"/alerts"))
		waitJS(t, bctx, "the VM's reachability alert", `!!document.querySelector('article[data-alert="web/reachability"]')`)
		shoot(t, bctx, "alerts")
		run("acknowledge",
			chromedp.SendKeys(chromedp.CSS(`article[data-alert="web/reachability"] input[name=comment]`), "looking into it"),
			chromedp.Click(chromedp.CSS(`article[data-alert="web/reachability"] .ack-btn`)),
		)
		waitJS(t, bctx, "the acknowledgement", `document.body.textContent.includes("Acknowledged by alice") && document.body.textContent.includes("looking into it")`)

		run("open the VM's page", chromedp.Navigate(base+"/hosts/web"))
		waitJS(t, bctx, "the start button", `!!document.querySelector("#vm-start")`)
		run("start the VM", chromedp.Click(chromedp.ID("vm-start")))
		waitJS(t, bctx, "the VM's page after the start", `!!document.querySelector("#vm-stop") && location.pathname === "/hosts/web"`)
		run("back to /live", chromedp.Navigate(base+"/live"))
		waitJS(t, bctx, "the VM up again", `!!document.querySelector('tr[data-host="web"][data-reach="up"]')`)
		if os.Getenv("MB_SCREENSHOTS") == "1" {
			// Let a few samples arrive so the charts have lines.
			time.Sleep(40 * time.Second)
			run("open the VM's page", chromedp.Navigate(base+"/hosts/web"))
			waitJS(t, bctx, "charts", `document.querySelectorAll("figure.chart polyline").length > 0`)
			shoot(t, bctx, "host")
		}
		// The audit log names alice's acknowledgement and start.
		run("open /settings", chromedp.Navigate(base+"/settings"))
		waitJS(t, bctx, "the audit log", `document.querySelector("#audit").textContent.includes("vm start") && document.querySelector("#audit").textContent.includes("acknowledge")`)
		// A change without the CSRF token is refused, even from the page.
		waitJS(t, bctx, "a CSRF-less POST to be refused", `(async () => {
			const r = await fetch("/api/0/hosts/web/vm/stop", {method: "POST"});
			return r.status === 403;
		})()`)
		run("sign out", chromedp.Click(chromedp.CSS(`.who button`)))
		waitJS(t, bctx, "the sign-in page", `location.pathname === "/login"`)
	})

	t.Run("monitor role", func(t *testing.T) {
		signIn("mona", "mona-pw")
		waitJS(t, bctx, "mona's live page", `!!document.querySelector('tr[data-host="web"]')`)
		fleetRows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('tr[data-host="fleet-01"]').length`))
		if err != nil || fleetRows != 0 {
			t.Error("mona sees fleet-01 on /live")
		}
		resp, err := chromedp.RunResponse(bctx, chromedp.Navigate(base+"/hosts/fleet-01"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusNotFound {
			t.Errorf("mona's /hosts/fleet-01: %d, want 404", resp.Status)
		}
		run("open web's page", chromedp.Navigate(base+"/hosts/web"))
		waitJS(t, bctx, "web's page", `location.pathname === "/hosts/web" && !!document.querySelector("#h-info")`)
		buttons, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#vm-start, #vm-stop, #vm-restart").length`))
		if err != nil || buttons != 0 {
			t.Errorf("mona sees %d VM buttons", buttons)
		}
		waitJS(t, bctx, "the API to refuse mona's stop", `(async () => {
			const csrf = document.querySelector('meta[name="csrf-token"]').content;
			const r = await fetch("/api/0/hosts/web/vm/stop", {method: "POST", headers: {"X-CSRF-Token": csrf}});
			return r.status === 403;
		})()`)
		// The session cookie is HttpOnly: the page's scripts cannot read it.
		cookieText, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`))
		if err != nil || strings.Contains(cookieText, service.SessionCookie) {
			t.Errorf("document.cookie: %q %v", cookieText, err)
		}
	})

	t.Run("websocket without a session", func(t *testing.T) {
		_, resp, err := websocket.Dial(ctx, "ws://"+svc.Addr().String()+"/ws", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("WebSocket without a session: %v %+v", err, resp)
		}
	})
}
