#!/bin/sh
# Prints the platform the image was built for and the machine it runs on.
busybox echo "@GREETING@ from $(busybox cat /srv/platform) (running on $(busybox uname -m))"
