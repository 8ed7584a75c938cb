#!/bin/sh
# greet NAME: the workshop's first program
echo "$GREETING, ${1:-you}!"
