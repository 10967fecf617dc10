"""The execution process's I/O: journal, gateways, control socket, prices, publishing."""
