package sparkplugpb

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The field numbers and the DataType values are the Sparkplug 3.0.0 wire contract:
// a typo in sparkplug_b.proto would make edgegate unable to talk to any edge node,
// so each is checked here against the specification's table.
func TestSchemaFieldNumbers(t *testing.T) {
	check := func(md protoreflect.MessageDescriptor, want map[string]protowire.Number) {
		t.Helper()
		if got := md.Fields().Len(); got != len(want) {
			t.Errorf("%s: %d fields, want %d", md.FullName(), got, len(want))
		}
		for name, num := range want {
			fd := md.Fields().ByName(protoreflect.Name(name))
			if fd == nil {
				t.Errorf("%s: no field %s", md.FullName(), name)
				continue
			}
			if fd.Number() != num {
				t.Errorf("%s.%s = %d, want %d", md.FullName(), name, fd.Number(), num)
			}
		}
	}
	check((&Payload{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"timestamp": 1, "metrics": 2, "seq": 3, "uuid": 4, "body": 5,
	})
	check((&Payload_Metric{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"name": 1, "alias": 2, "timestamp": 3, "datatype": 4, "is_historical": 5,
		"is_transient": 6, "is_null": 7, "metadata": 8, "properties": 9,
		"int_value": 10, "long_value": 11, "float_value": 12, "double_value": 13,
		"boolean_value": 14, "string_value": 15, "bytes_value": 16,
		"dataset_value": 17, "template_value": 18, "extension_value": 19,
	})
	check((&Payload_PropertyValue{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"type": 1, "is_null": 2, "int_value": 3, "long_value": 4, "float_value": 5,
		"double_value": 6, "boolean_value": 7, "string_value": 8,
		"propertyset_value": 9, "propertysets_value": 10, "extension_value": 11,
	})
	check((&Payload_MetaData{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"is_multi_part": 1, "content_type": 2, "size": 3, "seq": 4, "file_name": 5,
		"file_type": 6, "md5": 7, "description": 8,
	})
	check((&Payload_DataSet{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"num_of_columns": 1, "columns": 2, "types": 3, "rows": 4,
	})
	check((&Payload_Template{}).ProtoReflect().Descriptor(), map[string]protowire.Number{
		"version": 1, "metrics": 2, "parameters": 3, "template_ref": 4, "is_definition": 5,
	})

	types := []DataType{
		DataType_Unknown, DataType_Int8, DataType_Int16, DataType_Int32, DataType_Int64,
		DataType_UInt8, DataType_UInt16, DataType_UInt32, DataType_UInt64,
		DataType_Float, DataType_Double, DataType_Boolean, DataType_String,
		DataType_DateTime, DataType_Text, DataType_UUID, DataType_DataSet,
		DataType_Bytes, DataType_File, DataType_Template, DataType_PropertySet,
		DataType_PropertySetList, DataType_Int8Array, DataType_Int16Array,
		DataType_Int32Array, DataType_Int64Array, DataType_UInt8Array,
		DataType_UInt16Array, DataType_UInt32Array, DataType_UInt64Array,
		DataType_FloatArray, DataType_DoubleArray, DataType_BooleanArray,
		DataType_StringArray, DataType_DateTimeArray,
	}
	for i, dt := range types {
		if int(dt) != i {
			t.Errorf("DataType %s = %d, want %d", dt, dt, i)
		}
	}
}

// A payload built by hand from the wire format (as an edge node would send it)
// decodes into the generated types.
func TestSchemaWire(t *testing.T) {
	var metric []byte
	metric = protowire.AppendTag(metric, 1, protowire.BytesType)
	metric = protowire.AppendString(metric, "Temp")
	metric = protowire.AppendTag(metric, 2, protowire.VarintType)
	metric = protowire.AppendVarint(metric, 7)
	metric = protowire.AppendTag(metric, 4, protowire.VarintType)
	metric = protowire.AppendVarint(metric, uint64(DataType_Int32))
	metric = protowire.AppendTag(metric, 10, protowire.VarintType)
	minus5 := int32(-5)
	metric = protowire.AppendVarint(metric, uint64(uint32(minus5)))
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1700000000000)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, metric)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 42)

	var p Payload
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.GetTimestamp() != 1700000000000 || p.GetSeq() != 42 || len(p.GetMetrics()) != 1 {
		t.Fatalf("payload = %v", &p)
	}
	m := p.GetMetrics()[0]
	if m.GetName() != "Temp" || m.GetAlias() != 7 || DataType(m.GetDatatype()) != DataType_Int32 || int32(m.GetIntValue()) != -5 {
		t.Fatalf("metric = %v", m)
	}
}
