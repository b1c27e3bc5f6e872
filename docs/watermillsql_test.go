package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// wsqlChange is the one-line change docs/migrating-from-watermill.md shows
// for a dialect: the "before" program's line that builds the SQL
// publisher, the line that replaces it, and the import the new line needs.
// The document's fragments are checked against these strings (they are
// the fragments' "checked by" file), and TestWatermillSQLMigration applies
// them to the document's program.
type wsqlChange struct {
	dialect, service string
	before, after    string
	importLine       string
	// derive turns the document's PostgreSQL program into this dialect's,
	// as the document says (MySQL: its schema adapter and ? placeholders).
	derive *strings.Replacer
}

var wsqlChanges = []wsqlChange{{
	dialect: "postgres", service: outboxtest.Postgres,
	before:     `sqlPub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, logger)`,
	after:      `sqlPub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: postgres.WatermillSQLSchema{ForwarderTopic: forwarderTopic, KeyMetadata: "partition_key"}}, logger)`,
	importLine: `import "github.com/outboxkit/outboxkit/drivers/postgres"`,
	derive:     strings.NewReplacer(),
}, {
	dialect: "mysql", service: outboxtest.MySQL,
	before:     `sqlPub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultMySQLSchema{}}, logger)`,
	after:      `sqlPub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: mysql.WatermillSQLSchema{ForwarderTopic: forwarderTopic, KeyMetadata: "partition_key"}}, logger)`,
	importLine: `import "github.com/outboxkit/outboxkit/drivers/mysql"`,
	derive:     strings.NewReplacer("wsql.DefaultPostgreSQLSchema{}", "wsql.DefaultMySQLSchema{}", "$1, $2", "?, ?"),
}}

// wsqlImportAnchor is the import of the "before" program the driver's
// import is added after.
const wsqlImportAnchor = "\twsql \"github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql\"\n"

// TestWatermillSQLMigration runs the "before" program of
// docs/migrating-from-watermill.md with only its documented one-line change
// (and the import it needs), on PostgreSQL and on MariaDB, against
// outboxkit's relay: testdata/watermillsql_harness_test.go.txt issues
// invoices through the program's issueInvoice, some of them rolled back, and
// checks that the committed events arrive once each, in order per key, and
// the rolled-back ones never.
func TestWatermillSQLMigration(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(repoRoot, "docs", "migrating-from-watermill.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := extract("docs/migrating-from-watermill.md", src)
	if err != nil {
		t.Fatal(err)
	}
	var program string
	for _, b := range blocks {
		if b.lang == "go" && strings.Contains(b.body, "func issueInvoice") && strings.Contains(b.body, wsqlChanges[0].before) {
			if program != "" {
				t.Fatal("two Go blocks look like the \"before\" program")
			}
			program = b.body
		}
	}
	if program == "" {
		t.Fatalf("no Go block of the document builds its SQL publisher with\n%s", wsqlChanges[0].before)
	}
	harness, err := os.ReadFile(filepath.Join("testdata", "watermillsql_harness_test.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range wsqlChanges {
		t.Run(c.dialect, func(t *testing.T) {
			t.Parallel()
			for _, line := range []string{c.after, c.importLine} {
				if !strings.Contains(string(src), line) {
					t.Fatalf("the document does not show the line\n%s", line)
				}
			}
			outboxtest.RequireService(t, c.service)
			changed := c.derive.Replace(program)
			if n := strings.Count(changed, c.before); n != 1 {
				t.Fatalf("the %s program has the line to change %d times, want once:\n%s", c.dialect, n, c.before)
			}
			changed = strings.Replace(changed, c.before, c.after, 1)
			path := strings.TrimSuffix(strings.TrimPrefix(c.importLine, "import "), "\n")
			if !strings.Contains(changed, wsqlImportAnchor) {
				t.Fatalf("the program does not import watermill-sql as wsql")
			}
			changed = strings.Replace(changed, wsqlImportAnchor, wsqlImportAnchor+"\t"+path+"\n", 1)

			dir, err := os.MkdirTemp(".", "_wsql-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(changed), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "harness_test.go"), harness, 0o644); err != nil {
				t.Fatal(err)
			}
			dsn := outboxtest.PostgresURL()
			if c.dialect == "mysql" {
				dsn = outboxtest.MySQLDSN()
			}
			// In the workspace: the program builds against the working tree's
			// modules (the siblings are required at an unpublished release
			// version; make install-check covers the user's module path).
			cmd := exec.Command("go", "test", "-count=1", "-run", "^TestProgram$", "./"+filepath.ToSlash(dir))
			cmd.Env = append(os.Environ(), "WSQL_DIALECT="+c.dialect, "WSQL_DSN="+dsn)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the %s program with the one-line change failed (%v):\n%s\n--- program:\n%s", c.dialect, err, out, changed)
			}
			t.Logf("%s", out)
		})
	}
}
