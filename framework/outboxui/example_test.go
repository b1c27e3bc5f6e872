package outboxui_test

import (
	"log"
	"net/http"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxui"
)

// mountConsole is the snippet of docs/operations.md: the console under a
// service's own admin router (which authenticates its users).
func mountConsole(ob *outbox.Outbox, admin *http.ServeMux) error {
	ui, err := outboxui.New(ob, outboxui.Config{BasePath: "/admin/outbox", AllowActions: true})
	if err != nil {
		return err
	}
	// Call ui.Close() at shutdown: it stops the shared poller.
	admin.Handle("/admin/outbox/", http.StripPrefix("/admin/outbox", ui))
	return nil
}

// ExampleNew shows the console mounted under a service's admin router.
func ExampleNew() {
	admin := http.NewServeMux()
	var ob *outbox.Outbox // the service's Outbox, from outbox.New
	if err := mountConsole(ob, admin); err != nil {
		log.Print(err)
	}
}
