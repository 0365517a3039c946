package opcuasim

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// NamespaceURI is the simulator's namespace; it gets index 1.
const NamespaceURI = "urn:edgegate:edgesim"

// variable is one node of the namespace. The namespace's lock guards it.
type variable struct {
	name     string
	nodeID   *ua.NodeID
	typ      ua.TypeID
	value    any
	status   ua.StatusCode
	source   time.Time
	writable bool
	change   func(prev any, tick uint64) any
	writes   uint64
}

// namespace is a flat, thread-safe gopcua NameSpace of variables with string node
// ids (ns=1;s=NAME). gopcua's own NodeNameSpace writes a node's value without a lock
// and reports no DataType, so the simulator has its own.
type namespace struct {
	mu      sync.RWMutex
	id      uint16
	vars    map[string]*variable
	objects *server.Node
	// changed is told of every new value (the running server's subscription
	// engine); nil while the server is stopped.
	changed atomic.Pointer[func(key string, dv *ua.DataValue)]
}

var _ server.NameSpace = (*namespace)(nil)

func newNamespace() *namespace {
	return &namespace{vars: make(map[string]*variable)}
}

func (ns *namespace) Name() string { return NamespaceURI }
func (ns *namespace) ID() uint16   { return ns.id }

func (ns *namespace) SetID(id uint16) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.id = id
	for _, v := range ns.vars {
		v.nodeID = ua.NewStringNodeID(id, v.name)
	}
	// By hand: gopcua's NewFolderNode gives a Description no variant can hold.
	ns.objects = server.NewNode(ua.NewNumericNodeID(id, idObjects), server.Attributes{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: id, Name: "Simulation"}),
		ua.AttributeIDDisplayName: server.DataValueFromValue(ua.NewLocalizedText("Simulation")),
	}, nil, nil)
}

// idObjects is the objects folder's numeric id in our namespace.
const idObjects = id.ObjectsFolder

// AddNode is not used: the simulator adds variables with add.
func (ns *namespace) AddNode(n *server.Node) *server.Node { return n }

func (ns *namespace) Node(nid *ua.NodeID) *server.Node {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if nid == nil || nid.Namespace() != ns.id {
		return nil
	}
	if nid.Type() != ua.NodeIDTypeString {
		return ns.objects
	}
	v := ns.vars[nid.StringID()]
	if v == nil {
		return nil
	}
	return server.NewVariableNode(v.nodeID, v.name, v.value)
}

func (ns *namespace) Objects() *server.Node { return ns.objects }
func (ns *namespace) Root() *server.Node    { return ns.objects }

func (ns *namespace) Browse(bd *ua.BrowseDescription) *ua.BrowseResult {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if bd.NodeID.Type() == ua.NodeIDTypeString {
		return &ua.BrowseResult{StatusCode: ua.StatusGood, References: []*ua.ReferenceDescription{}}
	}
	names := make([]string, 0, len(ns.vars))
	for n := range ns.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	refs := make([]*ua.ReferenceDescription, 0, len(names))
	for _, n := range names {
		v := ns.vars[n]
		refs = append(refs, &ua.ReferenceDescription{
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HasComponent),
			IsForward:       true,
			NodeID:          ua.NewExpandedNodeID(v.nodeID, "", 0),
			BrowseName:      &ua.QualifiedName{NamespaceIndex: ns.id, Name: n},
			DisplayName:     ua.NewLocalizedText(n),
			NodeClass:       ua.NodeClassVariable,
			TypeDefinition:  ua.NewNumericExpandedNodeID(0, id.BaseDataVariableType),
		})
	}
	return &ua.BrowseResult{StatusCode: ua.StatusGood, References: refs}
}

func bad(s ua.StatusCode) *ua.DataValue {
	return &ua.DataValue{EncodingMask: ua.DataValueStatusCode | ua.DataValueServerTimestamp, Status: s, ServerTimestamp: time.Now()}
}

func good(v any) *ua.DataValue {
	return &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)}
}

// Attribute answers reads (and the initial values of monitored items).
func (ns *namespace) Attribute(nid *ua.NodeID, attr ua.AttributeID) *ua.DataValue {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if nid.Type() != ua.NodeIDTypeString {
		switch attr {
		case ua.AttributeIDNodeClass:
			return good(int32(ua.NodeClassObject))
		case ua.AttributeIDBrowseName:
			return good(&ua.QualifiedName{NamespaceIndex: ns.id, Name: "Simulation"})
		case ua.AttributeIDDisplayName:
			return good(ua.NewLocalizedText("Simulation"))
		}
		return bad(ua.StatusBadAttributeIDInvalid)
	}
	v := ns.vars[nid.StringID()]
	if v == nil {
		return bad(ua.StatusBadNodeIDUnknown)
	}
	switch attr {
	case ua.AttributeIDValue:
		return v.dataValue()
	case ua.AttributeIDNodeID:
		return good(v.nodeID)
	case ua.AttributeIDNodeClass:
		return good(int32(ua.NodeClassVariable))
	case ua.AttributeIDBrowseName:
		return good(&ua.QualifiedName{NamespaceIndex: ns.id, Name: v.name})
	case ua.AttributeIDDisplayName, ua.AttributeIDDescription:
		return good(ua.NewLocalizedText(v.name))
	case ua.AttributeIDDataType:
		return good(ua.NewNumericNodeID(0, uint32(v.typ)))
	case ua.AttributeIDValueRank:
		return good(int32(-1)) // scalar
	case ua.AttributeIDAccessLevel, ua.AttributeIDUserAccessLevel:
		level := ua.AccessLevelTypeCurrentRead
		if v.writable {
			level |= ua.AccessLevelTypeCurrentWrite
		}
		return good(byte(level))
	case ua.AttributeIDMinimumSamplingInterval:
		return good(float64(0))
	case ua.AttributeIDHistorizing:
		return good(false)
	}
	return bad(ua.StatusBadAttributeIDInvalid)
}

func (v *variable) dataValue() *ua.DataValue {
	dv := &ua.DataValue{
		EncodingMask:    ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		SourceTimestamp: v.source,
		ServerTimestamp: time.Now(),
	}
	if v.value != nil {
		dv.EncodingMask |= ua.DataValueValue
		dv.Value = ua.MustVariant(v.value)
	}
	if v.status != ua.StatusOK {
		dv.EncodingMask |= ua.DataValueStatusCode
		dv.Status = v.status
	}
	return dv
}

// SetAttribute answers writes: only values, only of writable variables, only of
// the variable's own type, as a strict server does.
func (ns *namespace) SetAttribute(nid *ua.NodeID, attr ua.AttributeID, dv *ua.DataValue) ua.StatusCode {
	if nid.Type() != ua.NodeIDTypeString || nid.Namespace() != ns.ID() {
		return ua.StatusBadNodeIDUnknown
	}
	key := nid.StringID()
	ns.mu.Lock()
	v := ns.vars[key]
	switch {
	case v == nil:
		ns.mu.Unlock()
		return ua.StatusBadNodeIDUnknown
	case attr != ua.AttributeIDValue:
		ns.mu.Unlock()
		return ua.StatusBadNotWritable
	case !v.writable:
		ns.mu.Unlock()
		return ua.StatusBadNotWritable
	case dv == nil || dv.Value == nil || dv.Value.Type() != v.typ:
		ns.mu.Unlock()
		return ua.StatusBadTypeMismatch
	}
	v.value = dv.Value.Value()
	v.status = ua.StatusOK
	v.source = time.Now()
	if dv.Has(ua.DataValueSourceTimestamp) && !dv.SourceTimestamp.IsZero() {
		v.source = dv.SourceTimestamp
	}
	v.writes++
	out := v.dataValue()
	ns.mu.Unlock()
	ns.notify(key, out)
	return ua.StatusOK
}

func (ns *namespace) notify(key string, dv *ua.DataValue) {
	if f := ns.changed.Load(); f != nil {
		(*f)(key, dv)
	}
}

// tick advances every changing variable and tells the engine.
func (ns *namespace) tick(n uint64, now time.Time) {
	f := ns.changed.Load()
	ns.mu.Lock()
	var changed []*variable
	for _, v := range ns.vars {
		if v.change == nil {
			continue
		}
		v.value = v.change(v.value, n)
		v.source = now
		changed = append(changed, v)
	}
	type upd struct {
		key string
		dv  *ua.DataValue
	}
	var out []upd
	if f != nil {
		out = make([]upd, len(changed))
		for i, v := range changed {
			out[i] = upd{v.name, v.dataValue()}
		}
	}
	ns.mu.Unlock()
	for _, u := range out {
		(*f)(u.key, u.dv)
	}
}
