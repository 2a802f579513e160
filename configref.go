package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/pgbackups/pgbackups/config"
)

// writeConfigReference prints every variable with its type, default and
// meaning, straight from the config struct's tags, so it cannot drift. The
// README's configuration table is this output.
func writeConfigReference(w io.Writer) {
	fmt.Fprintln(w, "| Variable | Type | Default | Meaning |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, f := range config.Fields() {
		def := f.Tag.Get("default")
		if def == "" {
			def = "(unset)"
		}
		name := "`" + config.VarName(f) + "`"
		if f.Tag.Get("secret") == "true" {
			name += " (or `_FILE`)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, typeName(f.Type), "`"+def+"`", strings.ReplaceAll(f.Tag.Get("desc"), "|", `\|`))
	}
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(config.Size(0)):
		return "size"
	case reflect.TypeOf(config.Duration(0)):
		return "duration"
	case reflect.TypeOf(config.Rate{}):
		return "rate"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind().String()
}
