package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/storage"
)

var infoCommand = command{
	name:    "info",
	args:    "[ID|latest] [--json] [--tables]",
	summary: "show everything recorded about one backup, failed ones included",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		asJSON := fs.Bool("json", false, "print the manifest as JSON, plus where each object is stored")
		allTables := fs.Bool("tables", false, fmt.Sprintf("list every table's row count (a backup of more than %d tables shows the %d with the most rows)", infoTablesAll, infoTablesTop))
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		man, err := m.resolve(ctx, pos)
		if err != nil {
			return err
		}
		problems, err := m.problems(ctx, man)
		if err != nil {
			return err
		}
		// Shown, not an error: info is how one looks at a broken backup.
		for _, p := range problems {
			fmt.Fprintf(m.Stderr, "warning: backup %s: %s\n", man.ID, p)
		}
		if *asJSON {
			enc := json.NewEncoder(m.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(infoJSON{Manifest: man, DataLocation: m.location(man.DataKey), GlobalsLocation: m.location(man.GlobalsKey), Problems: problems})
		}
		return m.printInfo(m.Stdout, man, problems, *allTables)
	},
}

// problems says what makes a completed backup unrestorable that can be
// told without reading it: its manifest's data fields, and its objects as
// storage lists them (missing, or cut short); and a start time retention
// cannot rank it by (none, or ahead of this host's clock), which does not
// stop a restore by id but does keep it out of retention and `latest`.
func (m *Main) problems(ctx context.Context, man storage.Manifest) ([]string, error) {
	if !man.OK() {
		return nil, nil
	}
	var out []string
	listed, damage := man, m.catalog().Damage
	if err := man.CheckData(); err != nil {
		out = append(out, err.Error())
		// Said already: the listing is asked about the globals only.
		damage = m.catalog().GlobalsDamage
	}
	if err := man.CheckGlobals(); err != nil {
		out = append(out, err.Error())
		listed.GlobalsKey = ""
	}
	if err := man.CheckStart(time.Now()); err != nil {
		out = append(out, err.Error())
	}
	err := damage(ctx, listed)
	switch {
	case errors.Is(err, storage.ErrDamaged):
		out = append(out, err.Error())
	case err != nil:
		return nil, err
	}
	return out, nil
}

// infoJSON is the manifest with the storage locations of its objects.
type infoJSON struct {
	storage.Manifest
	DataLocation    string `json:"data_location,omitempty"`
	GlobalsLocation string `json:"globals_location,omitempty"`
	// Problems lists what makes the backup unrestorable, as far as its
	// manifest and storage's listing tell (a flipped byte takes verify).
	Problems []string `json:"problems,omitempty"`
}

// resolve turns the optional [ID|latest] argument into a manifest.
func (m *Main) resolve(ctx context.Context, pos []string) (storage.Manifest, error) {
	ref := "latest"
	if len(pos) > 0 {
		ref = pos[0]
	}
	if ref != "latest" && !storage.ValidID(ref) {
		return storage.Manifest{}, usagef("%s is not a backup id (they look like 20261125-020000-k3f9; try `pgbackups list`), nor latest", shown(ref))
	}
	man, err := m.catalog().Resolve(ctx, ref)
	switch {
	case errors.Is(err, storage.ErrNoBackups):
		return man, fmt.Errorf("no completed backup in %s; `pgbackups list --all` shows failed ones, `pgbackups capture` takes one", m.root())
	case errors.Is(err, storage.ErrNotFound) && ref != "latest":
		return man, m.noSuchBackup(ctx, ref)
	}
	return man, err
}

// noSuchBackup says that id is not stored, with the stored id it was
// likely meant to be (a typo in the random suffix, or the same second).
func (m *Main) noSuchBackup(ctx context.Context, id string) error {
	hint := ""
	// One listing, no manifest read: this is an error path, and on S3
	// every manifest is a request.
	if objs, err := m.catalog().Store.List(ctx, ""); err == nil {
		var ids []string
		seen := map[string]bool{}
		for _, o := range objs {
			if other, ok := storage.BackupOf(o.Key); ok && !seen[other] {
				seen[other] = true
				ids = append(ids, other)
			}
		}
		near := closest(id, ids)
		for _, other := range ids {
			if near == "" && len(id) > 15 && len(other) > 15 && other[:15] == id[:15] {
				near = other // taken in the same second
			}
		}
		if near != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", near)
		}
	}
	return fmt.Errorf("backup %s: no such backup in %s%s; `pgbackups list --all` shows the ids stored", id, m.root(), hint)
}

// location names a key the way the operator knows the store; "" for "".
func (m *Main) location(key string) string {
	if key == "" {
		return ""
	}
	if d, ok := m.store.(storage.Describer); ok {
		return d.Location(key)
	}
	return key
}

// root names the store itself.
func (m *Main) root() string {
	if d, ok := m.store.(storage.Describer); ok {
		return d.Location("")
	}
	return m.cfg.StorageURL
}

func (m *Main) printInfo(w io.Writer, man storage.Manifest, problems []string, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, args...)) }
	when := func(t time.Time) string {
		return t.Local().Format("2006-01-02 15:04:05 MST") + "  (" + t.UTC().Format(time.RFC3339) + ")"
	}
	row("ID", "%s", man.ID)
	row("Status", "%s", man.Status)
	for _, p := range problems {
		row("Problem", "%s", p)
	}
	if man.Error != "" {
		row("Error", "%s", man.Error)
	}
	row("Database", "%s", man.Database)
	if man.Host != "" {
		row("Source", "%s (%s)", man.Host, man.Source)
	}
	row("Server version", "%s", man.ServerVersion)
	row("pg_dump version", "%s", man.PgDumpVersion)
	row("Started", "%s", when(man.StartedAt))
	row("Finished", "%s", when(man.FinishedAt))
	row("Duration", "%s", man.Duration().Round(time.Millisecond))
	if man.DatabaseBytes > 0 {
		row("Database size", "%s", config.HumanBytes(man.DatabaseBytes))
	}
	row("Dump size", "%s (%d bytes, pg_dump --format=%s)", config.HumanBytes(man.DumpBytes), man.DumpBytes, man.Format)
	row("Stored size", "%s (%d bytes, %s level %d)", config.HumanBytes(man.StoredBytes), man.StoredBytes, man.Compression, man.CompressionLevel)
	if man.Encryption != "" {
		row("Encrypted", "%s, to %s", man.Encryption, strings.Join(man.EncryptedTo, ", "))
	} else if man.OK() {
		row("Encrypted", "no")
	}
	if man.DataKey != "" {
		row("Data", "%s", m.location(man.DataKey))
		row("Data key", "%s", man.DataKey)
		row("SHA-256 (stored)", "%s", man.SHA256)
		row("SHA-256 (dump)", "%s", man.DumpSHA256)
	}
	if man.GlobalsKey != "" {
		row("Globals", "%s", m.location(man.GlobalsKey))
		row("SHA-256 (globals)", "%s", man.GlobalsSHA256)
	} else if man.OK() {
		row("Globals", "not stored")
	}
	if man.PgbackupsVersion != "" {
		row("pgbackups version", "%s", man.PgbackupsVersion)
	}
	for _, warn := range man.Warnings {
		row("Warning", "%s", warn)
	}
	if len(man.Tables) > 0 {
		method := man.TableCountMethod
		switch method {
		case "archive":
			method = "exact, counted in the archive"
		case "estimate":
			method = "estimated from pg_class.reltuples"
		}
		var rows int64
		for _, t := range man.Tables {
			rows += t.Rows
		}
		row("Tables", "%d (row counts %s), %d rows", len(man.Tables), method, rows)
	}
	if man.LargeObjects != nil {
		row("Large objects", "%d", *man.LargeObjects)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(man.Tables) == 0 {
		return nil
	}
	tables := man.Tables
	if !all && len(tables) > infoTablesAll {
		// A schema-per-tenant database has tens of thousands of tables:
		// listed whole, they would bury everything above them.
		tables = slices.Clone(tables)
		slices.SortStableFunc(tables, func(a, b storage.TableCount) int { return cmp.Compare(b.Rows, a.Rows) })
		tables = tables[:infoTablesTop]
		fmt.Fprintf(w, "The %d tables with the most rows:\n", len(tables))
	}
	// Counts first, right-aligned, then the name: one long identifier
	// (63 bytes, quoted) does not push every count off to the right.
	width := 0
	for _, t := range tables {
		width = max(width, len(strconv.FormatInt(t.Rows, 10)))
	}
	bw := bufio.NewWriter(w)
	for _, t := range tables {
		fmt.Fprintf(bw, "  %*d  %s.%s\n", width, t.Rows, ident(t.Schema), ident(t.Table))
	}
	if n := len(man.Tables) - len(tables); n > 0 {
		fmt.Fprintf(bw, "  ... and %d more: --tables lists every table, --json prints them with the whole manifest\n", n)
	}
	return bw.Flush()
}

// info lists the row counts of every table of a backup of up to
// infoTablesAll tables; of a bigger one, the infoTablesTop with the most
// rows, unless --tables.
const (
	infoTablesAll = 20
	infoTablesTop = 10
)

// ident quotes a name as SQL does when it is not a plain lower-case
// identifier, so that schema.table reads unambiguously whatever the names
// hold (dots, spaces, quotes, capitals).
func ident(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quote shell-quotes s for a copy-and-paste hint.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
