from mlflow_server.cli import main

main()
