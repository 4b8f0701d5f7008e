#!/usr/bin/python3
"""Asks graftd's server reflection, as grpcurl or Postman would, for every
service it lists and the file that defines it.

    reflection_probe.py HOST:PORT

Debian's grpcio has no grpc_reflection module, so the few protobuf fields of
grpc.reflection.v1alpha are written and read by hand here. Prints one line per
service ("SERVICE: FILE" or "SERVICE: error N: MESSAGE"); exit 1 when any
listed service cannot be resolved.
"""
import sys

import grpc

METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):  # a length-delimited field
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def read_varint(buf, i):
    """The varint at buf[i:] and the index after it."""
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """Top-level (number, value) pairs of a message; value is bytes or int."""
    i, out = 0, []
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            n, i = read_varint(buf, i)
            out.append((number, buf[i:i + n]))
            i += n
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def ask(channel, request):
    call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
    return next(iter(call(iter([request]), timeout=10)))


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    # list_services = 7
    listed = ask(channel, field(7, b""))
    services = []
    for number, value in fields(listed):
        if number == 6:  # list_services_response
            for n, service in fields(value):
                if n == 1:
                    services.append(dict(fields(service))[1].decode())
    if not services:
        print("no services listed")
        return 1
    failed = 0
    for service in services:
        answer = dict(fields(ask(channel, field(4, service.encode()))))  # file_containing_symbol = 4
        if 4 in answer:  # file_descriptor_response: its first FileDescriptorProto's name
            proto = next(v for n, v in fields(answer[4]) if n == 1)  # the defining file comes first
            print(f"{service}: {dict(fields(proto))[1].decode()}")
        else:
            error = dict(fields(answer.get(7, b"")))
            print(f"{service}: error {error.get(1)}: {error.get(2, b'').decode()}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
