from trtpipe.cli import main

main()
