package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	etls "github.com/edgegate/edgegate/tls"
)

const certsUsage = `Usage:
  edgegate certs init --dir DIR --hosts h1,h2 [--client-name NAME]

Writes a development CA, a server certificate for the hosts and a client
certificate into DIR, as ca.crt ca.key server.crt server.key client.crt client.key
(ECDSA P-256, PEM; keys with mode 0600). Existing files are never overwritten.
For production, issue certificates from your own CA or with cert-manager.
`

// certs runs `edgegate certs SUBCOMMAND`.
func certs(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, certsUsage)
			return nil
		}
		return fmt.Errorf("%w: expected 'init'\n%s", errUsage, certsUsage)
	}
	fs := flag.NewFlagSet("certs init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the files into (created if missing)")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IP addresses the server certificate is for")
	client := fs.String("client-name", "edgegate-client", "the client certificate's identity: a name (its CN), or a SPIFFE ID spiffe://domain/path (a URI SAN)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *dir == "" || *hosts == "" {
		return fmt.Errorf("%w: --dir and --hosts are required", errUsage)
	}
	var list []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			list = append(list, h)
		}
	}
	if err := etls.WriteDevSet(*dir, list, *client); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s in %s: a development CA, a server certificate for %s, a client certificate for %q\n",
		strings.Join(etls.DevFiles, " "), *dir, strings.Join(list, ", "), *client)
	return nil
}
