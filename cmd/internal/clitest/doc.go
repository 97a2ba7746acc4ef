// Package clitest runs a cli.Binary in-process for the commands' tests.
package clitest
