"""The command line: parse options, build a spec, call one library function, render."""
