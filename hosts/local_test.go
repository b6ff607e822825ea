package hosts_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/casecap/casecap/hosts"
)

// The local host reports failures as SSH hosts do: exit status and stderr.
func TestLocalFailuresSayWhy(t *testing.T) {
	c := hosts.Local("local")
	ctx := context.Background()
	var re *hosts.RunError
	if _, err := c.Run(ctx, []string{"sh", "-c", "echo oops >&2; exit 3"}, nil); !errors.As(err, &re) || re.Status != 3 || strings.TrimSpace(re.Stderr) != "oops" || re.Host != "local" {
		t.Errorf("Run: %v, want exit 3 with stderr oops", err)
	}
	p, err := c.Start(ctx, []string{"sh", "-c", `read x; echo "no $x" >&2; echo answered; exit 4`})
	if err != nil {
		t.Fatal(err)
	}
	p.Stdin().Write([]byte("luck\n"))
	out, _ := io.ReadAll(p.Stdout())
	if err := p.Wait(); !errors.As(err, &re) || re.Status != 4 || strings.TrimSpace(re.Stderr) != "no luck" || string(out) != "answered\n" {
		t.Errorf("Start: %v (stdout %q), want exit 4 with stderr \"no luck\"", err, out)
	}
	p, err = c.Start(ctx, []string{"cat"})
	if err != nil {
		t.Fatal(err)
	}
	p.Stdin().Write([]byte("fine\n"))
	p.Stdin().Close()
	if out, _ := io.ReadAll(p.Stdout()); string(out) != "fine\n" || p.Wait() != nil {
		t.Errorf("a command that succeeds: %q", out)
	}
}
