package mqtt

import (
	"strings"
)

// account is a configured user with its access lists.
type account struct {
	name      string
	hash      []byte
	publish   []string
	subscribe []string
}

// authorizer decides who may connect and what they may publish and subscribe. It is
// rebuilt whole on a reload; what outlives a reload (the password checks' queue, the
// throttle, the cache) is the adapter's loginGuard.
type authorizer struct {
	anonymous bool
	users     map[string]*account
	clients   []ClientConfig // certificate logins' devices (certauth.go)
}

// dummyHash is compared against when the username is unknown, so that an unknown
// user takes as long to refuse as a wrong password and names cannot be probed. It is
// a constant (bcrypt of "edgegate: no such user" at the default cost): computing it
// at start-up cost every edgegate command 50 ms, and every race-built test 1 s.
var dummyHash = []byte("$2a$10$40Hbkb2JDuY6BWuyYwGr5ehWsc126YaO3BrUYnaUZ1X8IsS1aSAY2")

func newAuthorizer(cfg *Config) *authorizer {
	a := &authorizer{
		anonymous: cfg.AllowAnonymous,
		users:     make(map[string]*account, len(cfg.Users)),
		clients:   cfg.Clients,
	}
	for _, u := range cfg.Users {
		a.users[u.Username] = &account{name: u.Username, hash: []byte(u.PasswordHash), publish: u.Publish, subscribe: u.Subscribe}
	}
	return a
}

type authResult uint8

const (
	authOK             authResult = iota
	authBadCredentials            // unknown user or wrong password
	authNotAuthorized             // anonymous, and anonymous access is off
	authCancelled                 // shutting down while waiting for a check
	authThrottled                 // the source has failed too many logins of late; not checked
	authBusy                      // the wait for a check reached the connect deadline
)

// user returns the account of a connected client's username; nil means anonymous.
func (a *authorizer) user(username []byte) (acc *account, known bool) {
	if len(username) == 0 {
		return nil, true
	}
	acc, ok := a.users[string(username)]
	return acc, ok
}

// allowPublish reports whether the client may publish on topic.
func (a *authorizer) allowPublish(username []byte, topic string) bool {
	acc, known := a.user(username)
	if !known {
		return false
	}
	if acc == nil {
		return a.anonymous
	}
	for _, f := range acc.publish {
		if filterCovers(f, topic) {
			return true
		}
	}
	return false
}

// allowRead reports whether the client may subscribe to filter, or receive a message
// on a topic (mochi asks the same question for both; a topic is a filter without
// wildcards). A requested filter is allowed when every topic it matches is matched by
// one of the user's subscribe filters.
func (a *authorizer) allowRead(username []byte, filter string) bool {
	acc, known := a.user(username)
	if !known {
		return false
	}
	if acc == nil {
		return a.anonymous
	}
	filter = unshare(filter)
	for _, f := range acc.subscribe {
		if filterCovers(f, filter) {
			return true
		}
	}
	return false
}

// isSharedFilter reports a shared subscription, $share/{group}/{filter}.
func isSharedFilter(f string) bool { return strings.HasPrefix(f, "$share/") }

// unshare returns the filter of a shared subscription, or f itself.
func unshare(f string) string {
	if !isSharedFilter(f) {
		return f
	}
	rest := strings.TrimPrefix(f, "$share/")
	if _, filter, ok := strings.Cut(rest, "/"); ok {
		return filter
	}
	return f
}

// filterCovers reports whether every topic that requested matches is also matched by
// allowed. Both are MQTT topic filters; a topic name is a filter without wildcards, so
// this is also the plain topic match. Per the spec, "a/#" matches "a" itself, and a
// wildcard in the first level does not match topics starting with '$'.
func filterCovers(allowed, requested string) bool {
	a := strings.Split(allowed, "/")
	r := strings.Split(requested, "/")
	dollar := strings.HasPrefix(requested, "$")
	for i := 0; ; i++ {
		if i == len(a) {
			return i == len(r)
		}
		if a[i] == "#" {
			return !(i == 0 && dollar)
		}
		if i == len(r) {
			return false
		}
		switch {
		case a[i] == "+":
			if r[i] == "#" || (i == 0 && dollar) {
				return false
			}
		case r[i] == "+" || r[i] == "#":
			return false // a literal cannot cover a wildcard
		case a[i] != r[i]:
			return false
		}
	}
}
