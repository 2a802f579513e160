package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/storage"
)

var listCommand = command{
	name:    "list",
	args:    "[--json] [--all]",
	summary: "list stored backups, newest first",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		asJSON := fs.Bool("json", false, "print the manifests as a JSON array")
		all := fs.Bool("all", false, "include failed backups")
		if _, err := m.parseFlags(fs, args, 0); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		entries, err := m.catalog().Entries(ctx)
		if err != nil {
			return err
		}
		// Rows newest first: completed backups (with --all, every manifest),
		// and manifests that cannot be read, which may be good backups'
		// and are never left out without a word.
		var rows []storage.Entry
		var ms []listRow
		var hidden []string // failed backups left out, newest first
		for _, e := range entries {
			switch {
			case e.Err != nil:
				fmt.Fprintf(m.Stderr, "warning: %v\n", e.Err)
			case e.Manifest != nil && (*all || e.Manifest.OK()):
				switch {
				case errors.Is(e.Damaged, storage.ErrStartTime):
					// Its data may be fine: it is its place among the
					// others that cannot be told.
					fmt.Fprintf(m.Stderr, "warning: backup %s: %v; retention leaves it alone and does not count it as a good backup, and `latest` does not go past it: name its id to restore it\n", e.ID, e.Damaged)
				case errors.Is(e.Damaged, storage.ErrGlobalsMissing):
					fmt.Fprintf(m.Stderr, "warning: backup %s: %v; its data restores without --with-globals into a cluster that has its roles and tablespaces, but retention does not count it as a good backup\n", e.ID, e.Damaged)
				case e.Damaged != nil:
					fmt.Fprintf(m.Stderr, "warning: backup %s: %v; it cannot be restored, and retention does not count it as a good backup\n", e.ID, e.Damaged)
				}
				row := listRow{Manifest: *e.Manifest}
				if e.Damaged != nil {
					row.Problems = []string{e.Damaged.Error()}
				}
				ms = append(ms, row)
			default:
				if e.Manifest != nil {
					hidden = append(hidden, e.ID)
				}
				continue
			}
			rows = append(rows, e)
		}
		if len(hidden) > 0 {
			// Retention removes failed backups older than the newest good
			// one, so these are mostly the latest attempts: say so.
			fmt.Fprintf(m.Stderr, "note: %s not shown (newest %s); `pgbackups list --all` shows them, `pgbackups info ID` says why\n",
				plural(len(hidden), "failed backup"), hidden[0])
		}
		if *asJSON {
			if ms == nil {
				ms = []listRow{}
			}
			enc := json.NewEncoder(m.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(ms)
		}
		if len(rows) == 0 {
			if len(hidden) == 0 {
				fmt.Fprintf(m.Stderr, "no backups stored yet in %s; run `pgbackups capture`\n", m.root())
			} else {
				fmt.Fprintln(m.Stderr, "no completed backups")
			}
			return nil
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
		// Which backups are encrypted, once any is: what a key rotation
		// or a replica without the setting leaves to look for.
		encCol := slices.ContainsFunc(rows, func(e storage.Entry) bool { return e.Manifest != nil && e.Manifest.Encryption != "" })
		enc := func(s string) string {
			if !encCol {
				return ""
			}
			return "\t" + s
		}
		fmt.Fprintln(tw, "ID\tSTATUS\tCREATED\tCREATED (UTC)\tDURATION\tDATABASE\tSTORED\tDUMP"+enc("ENCRYPTED"))
		for _, e := range rows {
			man := e.Manifest
			if man == nil {
				fmt.Fprintf(tw, "%s\tunreadable\t-\t-\t-\t-\t-\t-%s\n", e.ID, enc("-"))
				continue
			}
			status := man.Status
			switch {
			case errors.Is(e.Damaged, storage.ErrStartTime):
				status = "misdated"
			case e.Damaged != nil:
				status = "damaged"
			}
			encrypted := "no"
			if man.Encryption != "" {
				encrypted = man.Encryption
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", man.ID, status,
				man.StartedAt.Local().Format("2006-01-02 15:04:05 MST"),
				man.StartedAt.UTC().Format(time.RFC3339),
				roundDuration(man.Duration()), man.Database,
				config.HumanBytes(man.StoredBytes), config.HumanBytes(man.DumpBytes), enc(encrypted))
		}
		return tw.Flush()
	},
}

// listRow is a manifest as list --json shows it: with the problems
// storage's listing shows (a data object missing or cut short, a start time
// ahead of this host's clock), so a script choosing a backup from it can
// leave such a one alone, as restore and `latest` do.
type listRow struct {
	storage.Manifest
	Problems []string `json:"problems,omitempty"`
}

// roundDuration rounds a backup's duration to the second, or under a
// second to a tenth of one: a small database's backup is not "0s".
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
