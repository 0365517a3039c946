"""A Modbus device for the interop tests, served by pymodbus (Debian's
python3-pymodbus): known registers over TCP (--tcp PORT) or RTU on a serial
line (--rtu PATH, --baud, --parity). It runs until killed."""

import argparse
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)

parser = argparse.ArgumentParser()
parser.add_argument("--tcp", type=int)
parser.add_argument("--rtu")
parser.add_argument("--baud", type=int, default=19200)
parser.add_argument("--parity", default="E")
parser.add_argument("--units", default="1")
args = parser.parse_args()
logging.basicConfig(level=logging.ERROR)


def block(values, size=100):
    return ModbusSequentialDataBlock(0, values + [0] * (size - len(values)))


def slave(unit):
    # holding 0-1: float32 21.5 (0x41AC 0x0000); 2: 555; 10-11: "PY" + NULs;
    # 20+: free for writes. input 0: int16 -2; 1: the unit id.
    # coil 0 on, coil 5 off; discrete input 1 on.
    return ModbusSlaveContext(
        hr=block([0x41AC, 0x0000, 555, 0, 0, 0, 0, 0, 0, 0, 0x5059, 0x0000]),
        ir=block([0xFFFE, unit]),
        co=block([1, 0, 0, 0, 0, 0]),
        di=block([0, 1]),
        zero_mode=True,
    )


units = [int(u) for u in args.units.split(",")]
context = ModbusServerContext(slaves={u: slave(u) for u in units}, single=False)

if args.tcp:
    from pymodbus.server import StartTcpServer
    print("serving tcp", args.tcp, flush=True)
    StartTcpServer(context=context, address=("127.0.0.1", args.tcp))
elif args.rtu:
    from pymodbus.server import StartSerialServer
    from pymodbus.transaction import ModbusRtuFramer
    print("serving rtu", args.rtu, flush=True)
    StartSerialServer(context=context, framer=ModbusRtuFramer, port=args.rtu,
                      baudrate=args.baud, bytesize=8, parity=args.parity, stopbits=1,
                      timeout=0.005)
else:
    sys.exit("--tcp PORT or --rtu PATH")
